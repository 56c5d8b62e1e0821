-- The extensions Supabase offers that payguard uses, installed by the superuser into
-- `extensions` as Supabase does (pgtap and plpgsql_check are not trusted extensions).
create extension pgcrypto with schema extensions;
create extension "uuid-ossp" with schema extensions;
create extension pgtap with schema extensions;
create extension plpgsql_check with schema extensions;
