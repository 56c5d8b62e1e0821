-- The extensions Supabase offers that payguard uses, installed by the superuser into
-- `extensions` as Supabase does (pgtap and plpgsql_check are not trusted extensions).
create extension pgcrypto with schema extensions;
create extension "uuid-ossp" with schema extensions;
create extension pgtap with schema extensions;
create extension plpgsql_check with schema extensions;

-- pg_cron, as a Supabase project that enabled it has it: in pg_catalog, in the database the
-- server schedules for (cron.database_name), and usable by `postgres`. Only where the server
-- loads it; elsewhere (another database of the cluster, a server without it) nothing is done.
do $cron$
begin
  if current_database() = current_setting('cron.database_name', true)
    and 'pg_cron' = any(
      regexp_split_to_array(current_setting('shared_preload_libraries'), '\s*,\s*')
    ) then
    create extension if not exists pg_cron with schema pg_catalog;
    grant usage on schema cron to postgres;
    grant all privileges on all tables in schema cron to postgres;
    grant all privileges on all sequences in schema cron to postgres;
  end if;
end
$cron$;

-- pgaudit, where the server loads it: Supabase lets `postgres` set its settings (for a role
-- or a database), as object-level auditing needs. Parameter privileges belong to the whole
-- cluster: granted once.
do $pgaudit$
begin
  if exists (select from pg_catalog.pg_settings as s where s.name = 'pgaudit.role')
    and not has_parameter_privilege('postgres', 'pgaudit.role', 'SET') then
    grant set on parameter pgaudit.role, pgaudit.log, pgaudit.log_catalog, pgaudit.log_level,
    pgaudit.log_parameter, pgaudit.log_relation, pgaudit.log_statement_once to postgres;
  end if;
end
$pgaudit$;
