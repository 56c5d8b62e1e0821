-- Payout events move only the withdrawal whose recorded payout they are.
--
-- payout.paid / payout.failed found their withdrawal by the recorded payout id or, before it
-- was recorded, by `metadata.withdrawal_id`, checking only that the payout was made on the
-- withdrawal's connected account. Whoever can make payouts on that account (the owner of a
-- Standard account, with their own key or dashboard) could name their own approved
-- withdrawal: a payout they let fail moved it approved -> processing -> failed. And every
-- other payout on a connected account (the owner's own, an automatic one) was refused and
-- opened an inconsistency an admin had to resolve in writing.
--
-- Now:
--   * an event moves a withdrawal only when the payout's id is the one recorded for it
--     (record_withdrawal_payout, with the id the processor answered to payguard's own
--     request, or the payout found for that request on the connected account): metadata
--     alone names nothing, and an event never moves an approved withdrawal;
--   * a payout no withdrawal records is `ignored`: nothing moves and no inconsistency is
--     opened (`payguard reconcile --stripe` reports live payouts no withdrawal records);
--   * such an event is kept: when record_withdrawal_payout later records that payout id (its
--     event came before payguard recorded the payout), it applies the kept event then, in
--     its transaction, so no outcome is lost. A kept event refused then is marked refused
--     and recorded as a payout_refused inconsistency, as a refused delivery is.

/**
 * payout.paid / payout.failed: complete or fail the withdrawal whose recorded payout id is the
 * payout's, on the withdrawal's own connected account, for its amount and currency. A payout
 * no withdrawal records is ignored (recorded, and applied by record_withdrawal_payout if that
 * payout is recorded later). Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create or replace function private.apply_payout_event(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  withdrawal public.withdrawals;
  amount bigint;
  object_currency char(3);
  named text;
  -- The connected account the event happened on; none for the platform's own objects.
  connected text := nullif(event ->> 'account', '');
  payout_account text;
begin
  amount := private.event_amount(object, 'amount');
  object_currency := private.event_currency(object);
  select * into withdrawal from public.withdrawals as w
  where w.processor_payout_id = object ->> 'id'
  for update;
  if not found then
    -- The payout's metadata may name the withdrawal whose payout is being recorded right now:
    -- its lock orders this event after record_withdrawal_payout, which then either sees this
    -- event kept or has recorded the id. Metadata alone never moves anything.
    named := object -> 'metadata' ->> 'withdrawal_id';
    if coalesce(named, '') ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
      select * into withdrawal from public.withdrawals as w
      where w.id = named::uuid
      for update;
    end if;
    if withdrawal.id is null or withdrawal.processor_payout_id is distinct from object ->> 'id'
      then
      return 'ignored';
    end if;
  end if;
  -- A payout is made on the withdrawal's connected account.
  select pm.processor_account_id into payout_account from public.payout_methods as pm
  where pm.id = withdrawal.payout_method_id;
  if connected is distinct from payout_account then
    raise exception 'payout % was made on account %, not on the connected account of '
    'withdrawal %', object ->> 'id', coalesce(connected, 'the platform'), withdrawal.id
    using errcode = 'PT403';
  end if;
  if (withdrawal.amount_minor, withdrawal.currency) is distinct from (amount, object_currency)
    then
    raise exception 'payout % is for % %, but withdrawal % is for % %',
    object ->> 'id', amount, object_currency, withdrawal.id, withdrawal.amount_minor,
    withdrawal.currency
    using errcode = 'PT409';
  end if;
  if event_type = 'payout.paid' then
    if withdrawal.status = 'paid' then
      return 'processed';
    end if;
    perform private.complete_withdrawal(
      withdrawal.id, object ->> 'id', 'stripe:' || (object ->> 'id') || ':paid'
    );
  else
    if withdrawal.status = 'failed' then
      return 'processed';
    end if;
    perform private.fail_withdrawal(
      withdrawal.id,
      left(coalesce(
        nullif(object ->> 'failure_message', ''), nullif(object ->> 'failure_code', ''),
        'the processor reported the payout failed'
      ), 500),
      'stripe:' || (object ->> 'id') || ':failed'
    );
  end if;
  return 'processed';
end
$$;

/**
 * Record the processor's payout `payout_id` for approved withdrawal `withdrawal_id`
 * (payment_service), as in 20261205020500_withdrawal_payouts.sql: the withdrawal moves to
 * processing. Then the payout's events that came before (kept as ignored) are applied, in the
 * order they were received: payout.paid completes the withdrawal, payout.failed fails it. A
 * kept event refused then is marked refused and recorded as a payout_refused inconsistency.
 * A payout_unrecorded inconsistency about the payout is resolved with it. PT422 for an id that
 * is not po_….
 */
create or replace function public.record_withdrawal_payout(withdrawal_id uuid, payout_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  kept public.webhook_events;
  error_state text;
  error_text text;
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
  if coalesce(payout_id, '') !~ '^po_[A-Za-z0-9]+$' then
    raise exception 'a payout''s id is po_…, not %', coalesce(payout_id, 'nothing')
    using errcode = 'PT422';
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
  perform private.resolve_unrecorded_withdrawal_object('payout_unrecorded', payout_id, withdrawal.id);
  for kept in
    select * from public.webhook_events as e
    where e.type in ('payout.paid', 'payout.failed') and e.status = 'ignored'
      and e.payload -> 'data' -> 'object' ->> 'id' = record_withdrawal_payout.payout_id
    order by e.received_at, e.id
    for update
  loop
    begin
      perform private.apply_payout_event(kept.payload);
      update public.webhook_events as e
      set status = 'processed', processed_at = now()
      where e.id = kept.id;
    exception when others then
      get stacked diagnostics error_state = returned_sqlstate, error_text = message_text;
      if not private.refuses_event(error_state) then
        raise;
      end if;
      update public.webhook_events as e
      set status = 'refused', error_code = error_state, error_message = left(error_text, 2000),
        processed_at = now()
      where e.id = kept.id;
      perform public.record_processor_inconsistency(
        'payout_refused', payout_id, null, withdrawal.amount_minor, withdrawal.currency,
        'The processor reported ' || kept.type || ' before payout ' || payout_id
        || ' of withdrawal ' || withdrawal.id || ' was recorded, and the database refused it: '
        || error_text,
        kept.id
      );
    end;
  end loop;
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_payout.withdrawal_id;
  return to_jsonb(withdrawal);
end
$$;
