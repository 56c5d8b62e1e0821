-- Roles and grants
--
-- payguard's database roles (payment_service, escrow_service, admin, auditor), the private
-- schema that the API never exposes, and the default privileges that keep every new object away
-- from the API roles until a grant names it.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/roles_and_grants/, tests/sql/standin/

set local check_function_bodies = off;

-- Nothing reaches the API by default.
--
-- Supabase grants anon and authenticated every privilege on whatever `postgres` creates in
-- `public`, and PostgreSQL grants EXECUTE on every new function to PUBLIC. payguard turns both
-- off: each table and function is granted, right after it is created, exactly what its policy
-- spec allows. service_role keeps Supabase's defaults.
alter default privileges for role postgres in schema public
revoke all on tables from anon, authenticated;

alter default privileges for role postgres in schema public
revoke all on sequences from anon, authenticated;

alter default privileges for role postgres in schema public
revoke all on functions from anon, authenticated;

-- Per-schema default privileges cannot take away a global one, so this is global.
alter default privileges for role postgres
revoke execute on functions from public;

-- The schema for what app clients must never call or read directly: security-definer
-- helpers, the ledger, settings and counters. PostgREST does not expose it (it is not in
-- `pgrst.db_schemas`) and its tables grant nothing. Policies call helper functions here
-- with the caller's privileges, so the API roles may look names up in it (usage, below),
-- and EXECUTE is granted function by function.
create schema private;

comment on schema private is
'Internal objects of payguard: never exposed through the API. Functions here that run as '
'security definer set search_path to the empty string and qualify every name.';

-- The database roles of the payment domain.
--
-- payment_service and escrow_service are the backends that talk to the processor and move
-- escrowed money; admin and auditor are what an access token names for staff. None logs in:
-- authenticator takes them per request, as PostgREST does, and postgres may too, to test.
-- Roles belong to the whole cluster, so each is created only if missing.
do $roles$
declare
  service_role_name text;
begin
  foreach service_role_name in array array['payment_service', 'escrow_service', 'admin', 'auditor']
  loop
    if not exists (
      select from pg_catalog.pg_roles as r where r.rolname = service_role_name
    ) then
      execute format('create role %I nologin noinherit', service_role_name);
    end if;
  end loop;
end
$roles$;

-- authenticator switches to them per request; postgres, which runs the migrations and tests,
-- may take them too.
grant payment_service to authenticator, postgres;
grant escrow_service to authenticator, postgres;
grant admin to authenticator, postgres;
grant auditor to authenticator, postgres;

-- Usage of the schemas: of private for every role whose policies and functions call its
-- helpers, authenticated included; of public for the payment roles and staff (anon,
-- authenticated and service_role have it from Supabase).
grant usage on schema private to admin;
grant usage on schema private to auditor;
grant usage on schema private to authenticated;
grant usage on schema private to escrow_service;
grant usage on schema private to payment_service;
grant usage on schema public to admin;
grant usage on schema public to auditor;
grant usage on schema public to escrow_service;
grant usage on schema public to payment_service;

-- The API roles create no temporary objects, so none can stand in for a built-in type inside a
-- function that runs as its owner.
--
-- Every security definer function sets search_path = '', and names every table and function
-- of ours schema-qualified; the built-in types it names (text, jsonb, uuid, integer, …) it
-- names bare. With an empty search path PostgreSQL still looks in the session's temporary
-- schema first for types and tables (never for functions or operators). By default every
-- role holds the TEMPORARY privilege on the database through PUBLIC, so an `authenticated`
-- session on a direct connection could create `pg_temp.text` as a domain over text whose
-- check calls a function of its own: private.refused_call (or any security definer function
-- that declares a text variable) would then run that function as the owner, postgres, with
-- BYPASSRLS, and could write the audit log and the rate-limit counters, or anything else.
--
-- PostgREST, the Edge Functions and the tests' requests never create temporary objects. The
-- privilege is taken from PUBLIC and given to every other role that would hold it through
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
