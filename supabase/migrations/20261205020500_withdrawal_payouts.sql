-- Paying out an approved withdrawal through the processor. The payouts Edge Function, as
-- payment_service, lists what is due (withdrawals_to_pay_out), sends a transfer to the
-- contractor's connected account and a payout from it, each with an idempotency key derived
-- from the withdrawal, and records each id once (record_withdrawal_transfer, then
-- record_withdrawal_payout, which moves the withdrawal to processing). A processor failure
-- records nothing: the reservation stays and the withdrawal stays approved, to be retried
-- with the same keys. The withdrawal is paid or failed only by the processor's payout.paid or
-- payout.failed event (apply_stripe_event), through complete_withdrawal's and
-- fail_withdrawal's rules.
-- A payout method's verification state comes from the processor's account.updated event: no
-- payout goes to an account the processor says cannot receive one yet.

alter table public.withdrawals
add column processor_transfer_id text unique
check (processor_transfer_id ~ '^tr_[A-Za-z0-9]+$');

select private.renew_card_data_guard('public.withdrawals');
select private.renew_audit_trail('public.withdrawals');

/** A withdrawal's transfer id is recorded once, while it is approved and not yet paid out. */
create function private.keep_withdrawal_transfer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.processor_transfer_id is distinct from old.processor_transfer_id and (
    old.processor_transfer_id is not null or old.status <> 'approved'
    or new.status <> 'approved'
  ) then
    raise exception 'withdrawal %: the processor''s transfer id is recorded once, while it is '
    'approved', old.id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

revoke all on function private.keep_withdrawal_transfer() from public;

create trigger keep_withdrawal_transfer
before update of processor_transfer_id on public.withdrawals
for each row execute function private.keep_withdrawal_transfer();

/**
 * unverified: the processor has not reported on the account yet; pending: it needs more
 * information before paying out; verified: payouts are enabled; restricted: the processor
 * disabled them. Set by payment_service from account.updated.
 */
alter table public.payout_methods
add column verification_status text not null default 'unverified'
check (verification_status in ('unverified', 'pending', 'verified', 'restricted'));

select private.renew_card_data_guard('public.payout_methods');
select private.renew_audit_trail('public.payout_methods');

/**
 * Whether the processor lets `payout_method` receive a payout: not while it says the account
 * needs more information or is restricted.
 */
create function private.payout_method_payable(payout_method uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((
    select pm.verification_status not in ('pending', 'restricted')
    from public.payout_methods as pm where pm.id = payout_method
  ), false)
$$;

revoke all on function private.payout_method_payable(uuid) from public;

/**
 * The approved withdrawals not yet paid out, with what a payout needs: the amount and
 * currency, the connected account (`acct_…`) and its external account, the transfer id if one
 * was already recorded, and the idempotency keys to send (payment_service). Withdrawals to a
 * payout method the processor says cannot receive a payout are left out.
 */
create function public.withdrawals_to_pay_out()
returns table (
  withdrawal_id uuid,
  user_id uuid,
  amount_minor bigint,
  currency char(3),
  processor_account_id text,
  processor_external_account_id text,
  processor_transfer_id text,
  transfer_idempotency_key text,
  payout_idempotency_key text
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.user_id, w.amount_minor, w.currency, pm.processor_account_id,
    pm.processor_external_account_id, w.processor_transfer_id,
    'withdrawal:' || w.id || ':transfer', 'withdrawal:' || w.id || ':payout'
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  where w.status = 'approved' and w.processor_payout_id is null
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
$$;

revoke all on function public.withdrawals_to_pay_out()
from public, anon, authenticated, service_role;
grant execute on function public.withdrawals_to_pay_out() to payment_service;
grant execute on function private.payout_method_payable(uuid) to payment_service;

/**
 * Record the processor's transfer `transfer_id` for approved withdrawal `withdrawal_id`
 * (payment_service): set once, the same id again changes nothing, another is refused (PT409),
 * as is a withdrawal that is not approved (PT409) or whose payout method the processor says
 * cannot be paid (PT409). Returns the withdrawal.
 */
create function public.record_withdrawal_transfer(withdrawal_id uuid, transfer_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.processor_transfer_id = transfer_id then
    return to_jsonb(withdrawal);
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal_id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if not private.payout_method_payable(withdrawal.payout_method_id) then
    raise exception 'withdrawal %: the processor cannot pay out to its payout method yet',
    withdrawal_id
    using errcode = 'PT409', hint = 'wait for the account to be verified';
  end if;
  update public.withdrawals as w
  set processor_transfer_id = record_withdrawal_transfer.transfer_id
  where w.id = record_withdrawal_transfer.withdrawal_id
  returning * into withdrawal;
  return to_jsonb(withdrawal);
end
$$;

revoke all on function public.record_withdrawal_transfer(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_withdrawal_transfer(uuid, text) to payment_service;

/**
 * Record the processor's payout `payout_id` for approved withdrawal `withdrawal_id`
 * (payment_service), after its transfer: the withdrawal moves to processing. Set once: the
 * same id again changes nothing, another is refused (PT409), as is a withdrawal that is not
 * approved, or has no transfer recorded (PT409). Returns the withdrawal.
 */
create function public.record_withdrawal_payout(withdrawal_id uuid, payout_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_payout.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.processor_payout_id = payout_id then
    return to_jsonb(withdrawal);
  end if;
  if withdrawal.processor_payout_id is not null then
    raise exception 'withdrawal % was paid out by %, not %',
    withdrawal_id, withdrawal.processor_payout_id, payout_id
    using errcode = 'PT409';
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal_id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if withdrawal.processor_transfer_id is null then
    raise exception 'withdrawal % has no transfer recorded: its payout comes after it',
    withdrawal_id
    using errcode = 'PT409', hint = 'record_withdrawal_transfer first';
  end if;
  update public.withdrawals as w
  set status = 'processing', processor_payout_id = record_withdrawal_payout.payout_id
  where w.id = record_withdrawal_payout.withdrawal_id
  returning * into withdrawal;
  return to_jsonb(withdrawal);
end
$$;

revoke all on function public.record_withdrawal_payout(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_withdrawal_payout(uuid, text) to payment_service;
