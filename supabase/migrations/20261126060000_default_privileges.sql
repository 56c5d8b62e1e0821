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
