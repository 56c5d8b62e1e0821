-- A withdrawal that ends unpaid after its transfer gets its transfer reversed.
--
-- A withdrawal is paid out in two steps: a transfer from the platform to the contractor's
-- connected account, then a payout from that account to their bank. When the payout fails
-- (payout.failed: the bank returned it, and its amount is back on the connected account's
-- balance) the withdrawal fails and its reservation is voided, so the contractor's wallet
-- holds the money again while the connected account holds it too: paid twice in effect. The
-- same holds for an approved withdrawal canceled after its transfer.
--
-- Now a withdrawal that fails or is canceled with a transfer recorded opens, in that
-- transaction, a `transfer_unreversed` processor inconsistency naming the transfer (which
-- `payguard reconcile` reports), and is listed by withdrawals_to_reverse() for payment_service
-- (the payouts function) to reverse the transfer at the processor, under a key derived from
-- the withdrawal (`withdrawal:<id>:reversal`, then `…:reversal:<n>` after a refusal recorded
-- by record_withdrawal_processor_failure). record_withdrawal_transfer_reversal records the
-- reversal once and resolves the inconsistency.

/**
 * AFTER UPDATE trigger on withdrawals: a withdrawal that fails or is canceled after its
 * transfer was made records a transfer_unreversed inconsistency, open until the transfer is
 * reversed. Security definer: whoever fails or cancels it, the record is made.
 */
create function private.withdrawal_transfer_to_reverse() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.processor_inconsistencies (
    kind, processor_object_id, amount_minor, currency, detail
  )
  values (
    'transfer_unreversed', new.processor_transfer_id, new.amount_minor, new.currency,
    'Withdrawal ' || new.id || ' is ' || new.status || ' after transfer '
    || new.processor_transfer_id || ' was made: the money is on the connected account and in '
    || 'the wallet until the transfer is reversed'
  )
  on conflict on constraint processor_inconsistencies_kind_processor_object_id_key do nothing;
  return null;
end
$$;

revoke all on function private.withdrawal_transfer_to_reverse() from public;

create trigger withdrawal_transfer_to_reverse
after update of status on public.withdrawals
for each row
when (
  new.status in ('failed', 'canceled') and old.status is distinct from new.status
  and new.processor_transfer_id is not null
)
execute function private.withdrawal_transfer_to_reverse();

/**
 * The withdrawals that failed or were canceled after their transfer, whose transfer is not
 * reversed yet (payment_service): the amount and currency, the connected account, the
 * transfer, the reversal's attempt and the key to send it under.
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
  reversal_idempotency_key text
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, pm.processor_account_id,
    w.processor_transfer_id, r.attempt, private.withdrawal_step_key(w.id, 'reversal', r.attempt)
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'reversal') as attempt
  ) as r
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is not null
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    )
  order by w.updated_at, w.id
$$;

revoke all on function public.withdrawals_to_reverse()
from public, anon, authenticated, service_role;
grant execute on function public.withdrawals_to_reverse() to payment_service;

/**
 * Record the processor's reversal `reversal_id` (`trr_…`) of the transfer of withdrawal
 * `withdrawal_id` (payment_service): only for a withdrawal that failed or was canceled after
 * its transfer (PT409 otherwise); set once: the same id again changes nothing, another is
 * refused (PT409). It resolves the transfer_unreversed inconsistency. Returns {withdrawal_id,
 * processor_transfer_id, reversal_id, attempt}.
 */
create function public.record_withdrawal_transfer_reversal(withdrawal_id uuid, reversal_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer_reversal.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if coalesce(reversal_id, '') !~ '^trr_[A-Za-z0-9]+$' then
    raise exception 'a transfer reversal''s id is trr_…, not %', coalesce(reversal_id, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into recorded from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded';
  if found then
    if recorded.processor_object_id is distinct from reversal_id then
      raise exception 'the transfer of withdrawal % was reversed by %, not %',
      withdrawal.id, recorded.processor_object_id, reversal_id
      using errcode = 'PT409';
    end if;
  else
    if withdrawal.status not in ('failed', 'canceled')
      or withdrawal.processor_transfer_id is null then
      raise exception 'withdrawal % is % with transfer %: there is no transfer to reverse',
      withdrawal.id, withdrawal.status, coalesce(withdrawal.processor_transfer_id, 'none')
      using errcode = 'PT409';
    end if;
    at_attempt := private.withdrawal_step_attempt(withdrawal.id, 'reversal');
    insert into public.withdrawal_processor_attempts as a (
      withdrawal_id, step, attempt, idempotency_key, status, processor_object_id
    )
    values (
      withdrawal.id, 'reversal', at_attempt,
      private.withdrawal_step_key(withdrawal.id, 'reversal', at_attempt), 'succeeded',
      reversal_id
    )
    returning * into recorded;
    update public.processor_inconsistencies as i
    set resolution = 'Reversed: transfer ' || withdrawal.processor_transfer_id || ' of withdrawal '
      || withdrawal.id || ' was reversed by ' || reversal_id
    where i.kind = 'transfer_unreversed'
      and i.processor_object_id = withdrawal.processor_transfer_id
      and i.resolution is null;
  end if;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'processor_transfer_id', withdrawal.processor_transfer_id,
    'reversal_id', recorded.processor_object_id,
    'attempt', recorded.attempt
  );
end
$$;

revoke all on function public.record_withdrawal_transfer_reversal(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_withdrawal_transfer_reversal(uuid, text)
to payment_service;
