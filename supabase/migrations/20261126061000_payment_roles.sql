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

grant payment_service to authenticator, postgres;
grant escrow_service to authenticator, postgres;
grant admin to authenticator, postgres;
grant auditor to authenticator, postgres;

grant usage on schema public to payment_service, escrow_service, admin, auditor;

-- Policies call helper functions in `private`, with the caller's privileges, so the API roles
-- may look names up there. PostgREST does not expose `private` (it is not in
-- pgrst.db_schemas), its tables grant nothing, and EXECUTE is granted function by function.
grant usage on schema private
to authenticated, payment_service, escrow_service, admin, auditor;
