-- Supabase's database roles, with the attributes a Supabase project gives them.
-- Roles belong to the whole cluster, so this file is idempotent: it creates what is missing
-- and sets each attribute and setting that differs. What already holds is left untouched, so
-- installs into several databases of one cluster at once do not update the same role rows
-- (which fails with "tuple concurrently updated").
do $roles$
declare
  wanted record;
  existing record;
begin
  for wanted in
    select *
    from (
      values
        ('anon', false, true, false, false),
        ('authenticated', false, true, false, false),
        ('service_role', false, true, true, false),
        ('authenticator', true, false, false, false),
        ('supabase_auth_admin', true, false, false, true)
    ) as roles (rolname, can_login, inherits, bypasses_rls, creates_roles)
  loop
    select r.rolcanlogin, r.rolinherit, r.rolbypassrls, r.rolcreaterole into existing
    from pg_catalog.pg_roles as r
    where r.rolname = wanted.rolname;
    if existing is null then
      execute format('create role %I', wanted.rolname);
    end if;
    if existing is null
      or (existing.rolcanlogin, existing.rolinherit, existing.rolbypassrls, existing.rolcreaterole)
      is distinct from
      (wanted.can_login, wanted.inherits, wanted.bypasses_rls, wanted.creates_roles) then
      execute format(
        'alter role %I %s %s %s %s',
        wanted.rolname,
        case when wanted.can_login then 'login' else 'nologin' end,
        case when wanted.inherits then 'inherit' else 'noinherit' end,
        case when wanted.bypasses_rls then 'bypassrls' else 'nobypassrls' end,
        case when wanted.creates_roles then 'createrole' else 'nocreaterole' end
      );
    end if;
  end loop;

  -- The role that owns the schema and runs migrations. On Supabase it is not a superuser.
  -- Where it is this cluster's bootstrap superuser, it stays one: that cannot be changed.
  if not exists (select from pg_catalog.pg_roles as r where r.rolname = 'postgres') then
    create role postgres login nosuperuser createrole createdb replication bypassrls;
  elsif not exists (
    select from pg_catalog.pg_roles as r
    where
      r.rolname = 'postgres'
      and (
        r.oid = 10
        or (
          r.rolcanlogin and not r.rolsuper and r.rolcreaterole and r.rolcreatedb
          and r.rolreplication and r.rolbypassrls
        )
      )
  ) then
    alter role postgres login nosuperuser createrole createdb replication bypassrls;
  end if;
end
$roles$;

-- Granting a membership that exists changes nothing (PostgreSQL only notes it).
grant anon to authenticator, postgres;
grant authenticated to authenticator, postgres;
grant service_role to authenticator, postgres;

-- Each role's settings, set only where they differ.
do $settings$
declare
  wanted record;
begin
  for wanted in
    select *
    from (
      values
        ('anon', 'statement_timeout', '3s', '''3s'''),
        ('authenticated', 'statement_timeout', '8s', '''8s'''),
        ('authenticator', 'statement_timeout', '8s', '''8s'''),
        ('authenticator', 'lock_timeout', '8s', '''8s'''),
        -- "$user" is PostgreSQL's own placeholder for the role's schema.
        ('postgres', 'search_path', '"$user", public, extensions', '"$user", public, extensions')
    ) as settings (rolname, name, value, written)
  loop
    if not exists (
      select from pg_catalog.pg_db_role_setting as s
      inner join pg_catalog.pg_roles as r on r.oid = s.setrole
      where
        r.rolname = wanted.rolname
        and s.setdatabase = 0
        and wanted.name || '=' || wanted.value = any(s.setconfig)
    ) then
      execute format('alter role %I set %s = %s', wanted.rolname, wanted.name, wanted.written);
    end if;
  end loop;
end
$settings$;
