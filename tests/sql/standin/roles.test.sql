-- The stand-in's roles carry the attributes a Supabase project gives them.
begin;
select plan(27);

-- anon and authenticated: no login, inherit, row-level security applies
select is(
  (select row(rolcanlogin, rolinherit, rolbypassrls, rolsuper) from pg_roles where rolname = 'anon')::text,
  '(f,t,f,f)', 'anon is NOLOGIN INHERIT NOBYPASSRLS NOSUPERUSER'
);
select is(
  (select row(rolcanlogin, rolinherit, rolbypassrls, rolsuper) from pg_roles where rolname = 'authenticated')::text,
  '(f,t,f,f)', 'authenticated is NOLOGIN INHERIT NOBYPASSRLS NOSUPERUSER'
);
-- service_role: no login, bypasses row-level security
select is(
  (select row(rolcanlogin, rolbypassrls, rolsuper) from pg_roles where rolname = 'service_role')::text,
  '(f,t,f)', 'service_role is NOLOGIN BYPASSRLS NOSUPERUSER'
);
-- authenticator: logs in, inherits nothing, may become each API role
select is(
  (select row(rolcanlogin, rolinherit, rolbypassrls, rolsuper) from pg_roles where rolname = 'authenticator')::text,
  '(t,f,f,f)', 'authenticator is LOGIN NOINHERIT NOBYPASSRLS NOSUPERUSER'
);
select ok(pg_has_role('authenticator', 'anon', 'member'), 'authenticator may become anon');
select ok(pg_has_role('authenticator', 'authenticated', 'member'), 'authenticator may become authenticated');
select ok(pg_has_role('authenticator', 'service_role', 'member'), 'authenticator may become service_role');
select ok(not pg_has_role('authenticator', 'anon', 'usage'), 'authenticator does not inherit anon''s privileges');
select ok(not pg_has_role('authenticator', 'postgres', 'member'), 'authenticator cannot become postgres');

-- postgres: the migration role, powerful but not a superuser
select is(
  (select rolsuper from pg_roles where rolname = 'postgres'), false, 'postgres is NOSUPERUSER'
);
select is(
  (select rolcreaterole from pg_roles where rolname = 'postgres'), true, 'postgres has CREATEROLE'
);
select is(
  (select rolcreatedb from pg_roles where rolname = 'postgres'), true, 'postgres has CREATEDB'
);
select is(
  (select rolreplication from pg_roles where rolname = 'postgres'), true, 'postgres has REPLICATION'
);
select is(
  (select rolbypassrls from pg_roles where rolname = 'postgres'), true, 'postgres has BYPASSRLS'
);
select is(
  (select rolcanlogin from pg_roles where rolname = 'postgres'), true, 'postgres can log in'
);
select ok(pg_has_role('postgres', 'authenticated', 'member'), 'postgres may become authenticated');
select ok(pg_has_role('postgres', 'anon', 'member'), 'postgres may become anon');
select ok(pg_has_role('postgres', 'service_role', 'member'), 'postgres may become service_role');

-- the superuser is a separate role, as supabase_admin on Supabase
select is(
  (select rolsuper from pg_roles where rolname = 'supabase_admin'), true, 'supabase_admin is the superuser'
);
select is(current_user::text, 'postgres', 'the tests run as postgres, the role migrations run as');
select is(
  (select rolsuper from pg_roles where rolname = current_user), false, 'and so without superuser'
);

-- the API roles' own settings
select ok(
  exists (
    select from pg_db_role_setting as s join pg_roles as r on r.oid = s.setrole
    where r.rolname = 'anon' and 'statement_timeout=3s' = any(s.setconfig)
  ),
  'anon has a 3 s statement timeout'
);
select ok(
  exists (
    select from pg_db_role_setting as s join pg_roles as r on r.oid = s.setrole
    where r.rolname = 'authenticated' and 'statement_timeout=8s' = any(s.setconfig)
  ),
  'authenticated has an 8 s statement timeout'
);

-- schemas and exposed schemas
select has_schema('auth', 'the auth schema exists');
select has_schema('extensions', 'the extensions schema exists');
select is(
  current_setting('pgrst.db_schemas', true), 'public, graphql_public',
  'pgrst.db_schemas names the exposed schemas, for PostgREST and the linter'
);
select is(
  (select n.nspname::text from pg_extension as e join pg_namespace as n on n.oid = e.extnamespace where e.extname = 'pgtap'),
  'extensions', 'pgtap lives in the extensions schema'
);

select * from finish();
rollback;
