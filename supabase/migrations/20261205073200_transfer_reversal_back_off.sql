-- A transfer reversal the processor refused is retried with a growing delay, a few times.
--
-- A reversal the processor refused (balance_insufficient: the money left the connected
-- account with a payout; the account closed) was recorded and tried again under the next key
-- on every payouts run, for ever: each run answered 502 for it, masking real failures, and a
-- reversal that could never succeed took a new key each time. Operations have a lever for
-- such a transfer (leave_transfer_with_payee); the runs needed a limit.
--
-- Now withdrawals_to_reverse() also answers, for each withdrawal, how many times its
-- reversal was refused, when it is next due (`retry_after`, null when it is due now or no
-- longer retried by itself) and whether it is `due` now. After the n-th refusal the reversal
-- is due again 2^(n-1) hours after it (1 h, 2 h, 4 h, 8 h); after the fifth (about 15 hours
-- of tries) it is no longer retried by a run over every withdrawal. The transfer_unreversed
-- inconsistency stays open for operations, who either leave the transfer with the payee or,
-- once the money is back on the connected account, ask the payouts function for that
-- withdrawal by its id, which reverses it whatever the delay.

drop function public.withdrawals_to_reverse();

/**
 * The withdrawals that failed or were canceled after their transfer, whose transfer is neither
 * reversed nor left with the payee (payment_service), as in
 * 20261205072100_unreversed_transfers_left_with_payee.sql, with the reversal's back-off:
 * `refusals` (recorded refusals of its reversal), `retry_after` (when a refused reversal is
 * next tried: 2^(refusals-1) hours after the last refusal; null when there was none, and after
 * the fifth) and `due` (no refusal yet, or retry_after passed, and fewer than five refusals).
 */
create function public.withdrawals_to_reverse()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  processor_account_id text,
  processor_transfer_id text,
  reversal_attempt integer,
  reversal_idempotency_key text,
  refusals integer,
  retry_after timestamptz,
  due boolean
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, pm.processor_account_id,
    w.processor_transfer_id, r.attempt, private.withdrawal_step_key(w.id, 'reversal', r.attempt),
    f.refusals, b.retry_after,
    f.refusals = 0 or (f.refusals < 5 and b.retry_after <= now())
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'reversal') as attempt
  ) as r
  cross join lateral (
    select count(*)::integer as refusals, max(a.created_at) as last_refused
    from public.withdrawal_processor_attempts as a
    where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'failed'
  ) as f
  cross join lateral (
    select case when f.refusals between 1 and 4
        then f.last_refused + interval '1 hour' * power(2, f.refusals - 1)
      end as retry_after
  ) as b
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is not null
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    )
    and not exists (
      select from public.processor_inconsistencies as i
      where i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
        and i.resolution is not null
    )
  order by w.updated_at, w.id
$$;

revoke all on function public.withdrawals_to_reverse()
from public, anon, authenticated, service_role;
grant execute on function public.withdrawals_to_reverse() to payment_service;
