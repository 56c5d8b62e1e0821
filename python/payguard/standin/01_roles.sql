-- Supabase's database roles, with the attributes a Supabase project gives them.
-- Roles belong to the whole cluster, so this file is idempotent: it creates what is missing
-- and then sets every attribute, whatever the role had before.
do $roles$
declare
  wanted record;
begin
  for wanted in
    select *
    from (
      values
        ('anon', 'nologin inherit nobypassrls'),
        ('authenticated', 'nologin inherit nobypassrls'),
        ('service_role', 'nologin inherit bypassrls'),
        ('authenticator', 'login noinherit nobypassrls'),
        ('supabase_auth_admin', 'login noinherit createrole nobypassrls')
    ) as roles (rolname, attributes)
  loop
    if not exists (select from pg_catalog.pg_roles as r where r.rolname = wanted.rolname) then
      execute format('create role %I %s', wanted.rolname, wanted.attributes);
    else
      execute format('alter role %I %s', wanted.rolname, wanted.attributes);
    end if;
  end loop;

  -- The role that owns the schema and runs migrations. On Supabase it is not a superuser.
  -- Where it is this cluster's bootstrap superuser, it stays one: that cannot be changed.
  if not exists (select from pg_catalog.pg_roles as r where r.rolname = 'postgres') then
    create role postgres login nosuperuser createrole createdb replication bypassrls;
  elsif (select r.oid from pg_catalog.pg_roles as r where r.rolname = 'postgres') <> 10 then
    alter role postgres login nosuperuser createrole createdb replication bypassrls;
  end if;
end
$roles$;

grant anon to authenticator, postgres;
grant authenticated to authenticator, postgres;
grant service_role to authenticator, postgres;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';
-- "$user" is PostgreSQL's own placeholder for the role's schema.
alter role postgres set search_path = "$user", public, extensions; -- noqa: RF05
