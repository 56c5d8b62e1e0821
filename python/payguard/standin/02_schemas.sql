-- Supabase's schemas and the privileges it grants on them, `public` included.
create schema extensions;
grant all on schema extensions to postgres with grant option;
grant usage on schema extensions to anon, authenticated, service_role;
alter default privileges in schema extensions
grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema extensions
grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema extensions
grant all on sequences to postgres, anon, authenticated, service_role;

create schema auth authorization supabase_auth_admin;
grant usage on schema auth to postgres, anon, authenticated, service_role;

create schema graphql_public;
grant usage on schema graphql_public to postgres, anon, authenticated, service_role;

-- public: the API schema. Supabase grants the API roles everything that postgres creates in
-- it by default; payguard's migrations revoke and grant back table by table.
grant usage on schema public to anon, authenticated, service_role;
grant usage, create on schema public to postgres;
alter default privileges for role postgres in schema public
grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
grant all on sequences to anon, authenticated, service_role;

-- The same for what the superuser creates there, where it is Supabase's `supabase_admin`.
do $defaults$
begin
  if exists (select from pg_catalog.pg_roles as r where r.rolname = 'supabase_admin') then
    alter default privileges for role supabase_admin in schema public
    grant all on tables to postgres, anon, authenticated, service_role;
    alter default privileges for role supabase_admin in schema public
    grant all on functions to postgres, anon, authenticated, service_role;
    alter default privileges for role supabase_admin in schema public
    grant all on sequences to postgres, anon, authenticated, service_role;
  end if;
end
$defaults$;

-- On Supabase, postgres may create schemas in the project's database, whoever owns it.
do $database$
begin
  execute format('grant all on database %I to postgres', current_database());
end
$database$;
