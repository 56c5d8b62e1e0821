-- A withdrawal that ends unpaid after its transfer keeps its money reserved until the transfer
-- is reversed.
--
-- When a payout fails (or an approved withdrawal is canceled) after its transfer, the money
-- is on the contractor's connected account. The withdrawal's reservation was voided at once,
-- so the wallet showed the money again while the connected account held it too: the
-- contractor could request it again and a second transfer send it out twice, while the first
-- transfer waited to be reversed (and its reversal may be refused, e.g. once the connected
-- account's balance is paid out).
--
-- Two ways out were weighed: return the withdrawal to approved, keeping its transfer, so that
-- it is paid out again from the connected balance under the next payout key; or keep the
-- reservation until the transfer's reversal is recorded. The first retries a payout that the
-- bank has just refused (a closed account, wrong details) until someone intervenes, and
-- makes a failed withdrawal un-fail; the second keeps payout.failed's meaning (the withdrawal
-- failed, the contractor is told) and moves money back into the wallet only when it is back
-- on the platform. So: settle_withdrawal voids the reservation of a failed or canceled
-- withdrawal only when no transfer was made for it; for one with a transfer, the reservation
-- stays pending (the wallet's available balance excludes it: no new withdrawal can draw on
-- it) and record_withdrawal_transfer_reversal voids it, in the transaction that records the
-- reversal and resolves the transfer_unreversed inconsistency. A reversal that cannot be made
-- leaves the money reserved and the inconsistency open for operations.

/**
 * AFTER UPDATE trigger on withdrawals: settle the reservation when the withdrawal ends. Paid:
 * posted. Failed or canceled with no transfer made: voided, the money back in the wallet.
 * Failed or canceled after its transfer: kept until the transfer's reversal is recorded
 * (record_withdrawal_transfer_reversal voids it then).
 */
create or replace function private.settle_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.status = 'paid' then
    perform private.ledger_resolve(private.withdrawal_reservation(new.id), true);
  elsif new.status in ('failed', 'canceled') and new.processor_transfer_id is null then
    perform private.ledger_resolve(private.withdrawal_reservation(new.id), false);
  end if;
  return null;
end
$$;

/**
 * Void the reservation of withdrawal `withdrawal`, failed or canceled after its transfer, once
 * the transfer's reversal is recorded (PT409 otherwise): its money is back on the platform.
 * Security definer, for record_withdrawal_transfer_reversal (payment_service may not resolve
 * ledger transfers itself).
 */
create function private.void_reversed_withdrawal_reservation(withdrawal uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (
    select from public.withdrawals as w
    inner join public.withdrawal_processor_attempts as a
      on a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    where w.id = withdrawal and w.status in ('failed', 'canceled')
  ) then
    raise exception 'withdrawal % has no recorded reversal of its transfer: its money stays '
    'reserved', withdrawal
    using errcode = 'PT409';
  end if;
  perform private.ledger_resolve(private.withdrawal_reservation(withdrawal), false);
end
$$;

revoke all on function private.void_reversed_withdrawal_reservation(uuid) from public;
grant execute on function private.void_reversed_withdrawal_reservation(uuid) to payment_service;

/**
 * Record the processor's reversal `reversal_id` (`trr_…`) of the transfer of withdrawal
 * `withdrawal_id` (payment_service), as in 20261205030300_transfer_reversals.sql, and void the
 * withdrawal's reservation with it: the money is back on the platform, and in the wallet.
 */
create or replace function public.record_withdrawal_transfer_reversal(
  withdrawal_id uuid, reversal_id text
)
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
    -- The money is back on the platform: only now is it back in the wallet.
    perform private.void_reversed_withdrawal_reservation(withdrawal.id);
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
