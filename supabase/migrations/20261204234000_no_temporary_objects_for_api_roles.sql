-- The API roles create no temporary objects, so none can stand in for a built-in type inside a
-- function that runs as its owner.
--
-- Every security definer function sets search_path = '', and names every table and function
-- of ours schema-qualified; the built-in types it names (text, jsonb, uuid, integer, …) it
-- names bare. With an empty search path PostgreSQL still looks in the session's temporary
-- schema first for types and tables (never for functions or operators). Every role held the
-- TEMPORARY privilege on the database through PUBLIC, so an `authenticated` session on a
-- direct connection could create `pg_temp.text` as a domain over text whose check calls a
-- function of its own: private.refused_call (or any security definer function that declares
-- a text variable) then ran that function as the owner, postgres, with BYPASSRLS. It could
-- have written the audit log and the rate-limit counters, or anything else.
--
-- PostgREST, the Edge Functions and the tests' requests never create temporary objects. The
-- privilege is taken from PUBLIC and given back to every other role that held it through
-- PUBLIC (the database's owner keeps it as owner); the API roles and the role PostgREST logs
-- in as get none. PostgreSQL checks the privilege against the current role at each creation
-- in the temporary schema, so a session whose temporary schema already exists is refused
-- too once it switches to an API role.

do $revoke_temporary$
declare
  grantee text;
begin
  execute format('revoke temporary on database %I from public', current_database());
  for grantee in
    select r.rolname from pg_catalog.pg_roles as r
    where not r.rolsuper
      and r.rolname !~ '^pg_'
      and r.rolname <> all (array[
        'anon', 'authenticated', 'service_role', 'payment_service', 'escrow_service', 'admin',
        'auditor', 'authenticator'
      ])
      and r.oid <> (
        select d.datdba from pg_catalog.pg_database as d where d.datname = current_database()
      )
    order by r.rolname
  loop
    execute format('grant temporary on database %I to %I', current_database(), grantee);
  end loop;
  for grantee in
    select r.rolname from pg_catalog.pg_roles as r
    where r.rolname = any (array[
      'anon', 'authenticated', 'service_role', 'payment_service', 'escrow_service', 'admin',
      'auditor', 'authenticator'
    ])
  loop
    execute format('revoke temporary on database %I from %I', current_database(), grantee);
  end loop;
end
$revoke_temporary$;
