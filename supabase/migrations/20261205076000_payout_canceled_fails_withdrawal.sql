-- payout.canceled ends a withdrawal as payout.failed does.
--
-- A payout still pending can be canceled (by the platform, or by Stripe); its amount goes back
-- to the connected account's balance, as a failed payout's does. payout.canceled was ignored
-- as a type that moves nothing, so the withdrawal stayed processing for ever, its money
-- reserved, with nothing reporting it. It now fails the withdrawal, with the reason "the
-- processor canceled the payout" (the money is on the connected account: the reservation is
-- kept until the transfer is reversed, as after payout.failed), under the same rules: only
-- the payout recorded for the withdrawal moves it, and one that arrives before its payout is
-- recorded is kept and applied by record_withdrawal_payout.

/**
 * As in 20261205072200_stripe_event_handlers.sql, with payout.canceled handed to
 * private.apply_payout_event as payout.failed is.
 */
create or replace function private.apply_stripe_event_effects(event jsonb)
returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  -- The connected account the event happened on; none for the platform's own objects.
  connected text := nullif(event ->> 'account', '');
begin
  if jsonb_typeof(object) is distinct from 'object' or coalesce(object ->> 'id', '') = '' then
    raise exception 'event % has no data.object with an id', event ->> 'id'
    using errcode = 'PT422';
  end if;

  -- Payments, charges and chargebacks are the platform's: the same object on a connected
  -- account (which keeps its own metadata, and whose money the platform never received) moves
  -- nothing here.
  if connected is not null
    and (event_type like 'payment_intent.%' or event_type like 'charge.%') then
    raise exception 'event % happened on connected account %: % events are the platform''s own',
    event ->> 'id', connected, event_type
    using errcode = 'PT403';
  end if;

  if event_type = 'payment_intent.succeeded' then
    return private.apply_payment_intent_succeeded(event);
  end if;

  if event_type in ('payment_intent.payment_failed', 'payment_intent.canceled') then
    return private.apply_payment_intent_failure(event);
  end if;

  if event_type = 'charge.refunded' then
    return private.apply_charge_refunded(event);
  end if;

  if event_type = 'charge.dispute.created' then
    return private.apply_charge_dispute_created(event);
  end if;

  if event_type = 'charge.dispute.closed' then
    return private.apply_charge_dispute_closed(event);
  end if;

  if event_type in ('payout.paid', 'payout.failed', 'payout.canceled') then
    return private.apply_payout_event(event);
  end if;

  if event_type = 'account.updated' then
    return private.apply_account_updated(event);
  end if;

  return 'ignored';
end
$$;

/**
 * As in 20261205073100_payout_events_only_for_recorded_payouts.sql; payout.canceled fails the
 * withdrawal as payout.failed does, with its own reason when the payout names none.
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
        case
          when event_type = 'payout.canceled' then 'the processor canceled the payout'
          else 'the processor reported the payout failed'
        end
      ), 500),
      'stripe:' || (object ->> 'id') || ':failed'
    );
  end if;
  return 'processed';
end
$$;

/**
 * As in 20261205073100_payout_events_only_for_recorded_payouts.sql; a kept payout.canceled is
 * applied too.
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
    where e.type in ('payout.paid', 'payout.failed', 'payout.canceled')
      and e.status = 'ignored'
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
