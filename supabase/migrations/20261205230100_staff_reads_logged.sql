-- Staff reads of restricted data are logged: pgaudit's object-level auditing of API reads of
-- payment methods, payout methods, withdrawals and the audit log (through the role
-- payguard_read_audit and authenticator's pgaudit.role), and a line naming the staff member,
-- written by the policy "Staff reads are logged" (the next migration).

do $read_audit_role$
begin
  if not exists (select from pg_catalog.pg_roles as r where r.rolname = 'payguard_read_audit') then
    create role payguard_read_audit nologin noinherit;
  end if;
  -- It never logs in: no temporary objects either (roles_and_grants.sql gives them to the
  -- roles that exist when it runs).
  execute format(
    'revoke temporary on database %I from payguard_read_audit', current_database()
  );
end
$read_audit_role$;

-- What pgaudit logs the reads of: the audit role's grants, never used to log in.
grant select on public.payment_methods to payguard_read_audit;
grant select on public.payout_methods to payguard_read_audit;
grant select on public.withdrawals to payguard_read_audit;
grant select on public.payment_audit_logs to payguard_read_audit;

do $read_audit_setting$
begin
  if not exists (select from pg_catalog.pg_settings as s where s.name = 'pgaudit.role') then
    raise notice 'pgaudit is not loaded: API reads of restricted data are not logged by it';
  elsif not has_parameter_privilege('pgaudit.role', 'SET') then
    raise notice 'pgaudit.role cannot be set by %: as a role that may, run %', current_user,
    'alter role authenticator set pgaudit.role = ''payguard_read_audit''';
  else
    alter role authenticator set pgaudit.role = 'payguard_read_audit';
  end if;
end
$read_audit_setting$;

/**
 * Log a staff read of `relation` to the server log, with the acting user's id from the
 * request's claims, and return true: the restrictive policy "Staff reads are logged" calls it
 * once per statement (as an init plan) that a staff role runs on a restricted table.
 */
create or replace function private.log_staff_read(relation text) returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
begin
  raise log 'payguard staff read: relation=% actor=% role=% app_role=%',
    relation,
    coalesce(claims ->> 'sub', 'none'),
    current_user,
    coalesce(claims ->> 'user_role', 'none');
  return true;
end
$$;

grant execute on function private.log_staff_read(text) to admin;
grant execute on function private.log_staff_read(text) to auditor;
grant execute on function private.log_staff_read(text) to authenticated;
