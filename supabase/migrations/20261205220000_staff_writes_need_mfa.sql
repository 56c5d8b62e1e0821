-- Staff are held to the users' bar: a staff member's write (the request's role, or its
-- token's, is admin or auditor) needs aal2 on every table staff may write, and a role change
-- or a withdrawal's approval also a recent MFA step-up.

set local check_function_bodies = off;

/**
 * BEFORE INSERT OR UPDATE OR DELETE trigger: a staff member's write needs aal2 (PT403
 * otherwise); with the argument `step_up`, also an MFA step-up within the step-up window
 * (private.has_recent_step_up). Writes by anyone else pass unchecked here.
 */
create or replace function private.staff_writes_need_mfa() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The request's claims, as auth.jwt() reads them (the backend roles have no USAGE on auth).
  claims jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
begin
  if current_user in ('admin', 'auditor') or claims ->> 'role' in ('admin', 'auditor') then
    if claims ->> 'aal' is distinct from 'aal2' then
      raise exception 'a staff member''s change to % needs multi-factor authentication (aal2)',
      tg_table_name
      using errcode = 'PT403', hint = 'verify a second factor, then retry';
    end if;
    if 'step_up' = any(tg_argv) and not private.has_recent_step_up() then
      raise exception 'a staff member''s change to % needs a recent MFA step-up', tg_table_name
      using errcode = 'PT403', hint = 'verify a second factor again, then retry';
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

create trigger staff_writes_need_mfa
before insert or update or delete on public.users
for each row execute function private.staff_writes_need_mfa('step_up');

create trigger staff_writes_need_mfa
before insert or update or delete on public.disputes
for each row execute function private.staff_writes_need_mfa();

create trigger staff_writes_need_mfa
before insert or update or delete on public.escrow_accounts
for each row execute function private.staff_writes_need_mfa();

create trigger staff_writes_need_mfa
before insert or update or delete on public.milestone_payments
for each row execute function private.staff_writes_need_mfa();

create trigger staff_writes_need_mfa
before insert or update or delete on public.payment_transactions
for each row execute function private.staff_writes_need_mfa();

create trigger staff_writes_need_mfa
before insert or update or delete on public.withdrawal_approvals
for each row execute function private.staff_writes_need_mfa('step_up');

create trigger staff_writes_need_mfa
before insert or update or delete on public.withdrawals
for each row execute function private.staff_writes_need_mfa();

grant execute on function private.has_recent_step_up() to admin, auditor;
