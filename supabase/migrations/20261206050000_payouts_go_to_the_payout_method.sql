-- A payout goes to the bank account its payout method names: withdrawals_to_pay_out() hands
-- the payouts function the payout method's external account, sealed, as the payout's
-- destination. A bank account added at the processor, and not as a payout method, receives
-- nothing (and a payout method's own cool-down covers every destination).

drop function public.withdrawals_to_pay_out();

/**
 * The approved withdrawals not yet paid out to a payable payout method, with what a payout
 * needs (payment_service): the amount and currency, the payout method and its external
 * account, sealed (the payout's destination: the bank account the payout method names, never
 * whichever the connected account holds as its default at the processor), its connected
 * account (its row and its sealed token; the payouts function opens both), the transfer id
 * if one was already
 * recorded, the idempotency keys to send (those of the attempt each step is at: a step the
 * processor refused gets the next key), the attempts' numbers, and the last refusal's code, if
 * any.
 */
create function public.withdrawals_to_pay_out()
returns table (
  withdrawal_id uuid,
  user_id uuid,
  amount_minor bigint,
  currency char(3),
  account_id uuid,
  account_sealed jsonb,
  payout_method_id uuid,
  processor_transfer_id text,
  transfer_idempotency_key text,
  payout_idempotency_key text,
  transfer_attempt integer,
  payout_attempt integer,
  last_failure_code text,
  external_account_sealed jsonb
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.user_id, w.amount_minor, w.currency, account.id,
    account.processor_account_id_sealed, pm.id, w.processor_transfer_id,
    private.withdrawal_step_key(w.id, 'transfer', t.attempt),
    private.withdrawal_step_key(w.id, 'payout', p.attempt),
    t.attempt, p.attempt,
    (
      select a.failure_code from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.status = 'failed'
      order by a.created_at desc, a.attempt desc
      limit 1
    ),
    pm.processor_external_account_id_sealed
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'transfer') as attempt
  ) as t
  cross join lateral (select private.withdrawal_step_attempt(w.id, 'payout') as attempt) as p
  where w.status = 'approved' and w.processor_payout_id is null
    -- Not during its payout method's cool-down, unless two admins approved it (withdrawals.sql).
    and private.withdrawal_clear_of_cool_down(w.id)
    -- Not while payouts are frozen, nor to a user whose payments are suspended
    -- (incident_controls.sql).
    and private.platform_freeze('payouts') is null
    and private.payment_suspension(w.user_id) is null
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
$$;

revoke execute on function withdrawals_to_pay_out() from service_role;

grant execute on function withdrawals_to_pay_out() to payment_service;
