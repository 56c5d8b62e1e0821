-- Applying the processor's webhook events, once each, in the transaction that records them.
-- The stripe-webhook Edge Function verifies the signature, then calls apply_stripe_event as
-- payment_service. The event is recorded in webhook_events by its id exactly once (a
-- concurrent second delivery waits for the first and finds it done) and applied through the
-- same rules as every other caller's statements: the transition triggers decide, so an
-- out-of-order or illegal move, a wrong amount or currency or an unknown object is refused.
-- A refusal is recorded with its error, its effects rolled back, and acknowledged (`payguard
-- reconcile` reports it); an unexpected error (deadlock, serialization, lock timeout, ...) is
-- recorded as failed and applied again on the processor's next delivery.

alter table public.webhook_events
add column error_code text check (error_code ~ '^[0-9A-Z]{5}$'),
add column deliveries integer not null default 1 check (deliveries >= 1);

select private.renew_card_data_guard('public.webhook_events');
select private.renew_audit_trail('public.webhook_events');

-- charge.refunded events are looked up by their PaymentIntent when that intent's success
-- arrives after them.
create index webhook_events_payment_intent_idx
on public.webhook_events (
  (payload -> 'data' -> 'object' ->> 'payment_intent'), type
);

/**
 * Whether an error refuses an event for good (the database's rules said no: PTxxx, data and
 * integrity errors, a RAISE without a code) rather than failing it for now (anything else:
 * deadlocks, serialization failures, lock or statement timeouts, a missing privilege), which
 * the processor's next delivery retries.
 */
create function private.refuses_event(error_state text) returns boolean
language sql
immutable
set search_path = ''
as $$
  select error_state like 'PT%' or left(error_state, 2) in ('22', '23')
    or error_state in ('P0001', 'P0002')
$$;

revoke all on function private.refuses_event(text) from public;
grant execute on function private.refuses_event(text) to payment_service;

/** An amount in minor units from the processor's object: a JSON integer, never a float. */
create function private.event_amount(object jsonb, field text) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
begin
  if jsonb_typeof(object -> field) is distinct from 'number'
    or (object ->> field) !~ '^[0-9]{1,18}$' then
    raise exception 'the event''s % % is not an amount in minor units', object ->> 'object', field
    using errcode = 'PT422';
  end if;
  return (object ->> field)::bigint;
end
$$;

revoke all on function private.event_amount(jsonb, text) from public;
grant execute on function private.event_amount(jsonb, text) to payment_service;

/** A currency from the processor's object (Stripe writes them in lower case). */
create function private.event_currency(object jsonb) returns char(3)
language plpgsql
immutable
set search_path = ''
as $$
begin
  if coalesce(object ->> 'currency', '') !~ '^[A-Za-z]{3}$' then
    raise exception 'the event''s % has no currency', object ->> 'object'
    using errcode = 'PT422';
  end if;
  return upper(object ->> 'currency');
end
$$;

revoke all on function private.event_currency(jsonb) from public;
grant execute on function private.event_currency(jsonb) to payment_service;

/**
 * The milestone payment a PaymentIntent names in its metadata (milestone_payment_id), locked,
 * checked against the intent's amount and currency (PT422 without one, PT404 for an unknown
 * payment, PT409 for another amount or currency).
 */
create function private.event_milestone_payment(intent jsonb)
returns public.milestone_payments
language plpgsql
set search_path = ''
as $$
declare
  named text := intent -> 'metadata' ->> 'milestone_payment_id';
  payment public.milestone_payments;
  amount bigint := private.event_amount(intent, 'amount');
  charged_currency char(3) := private.event_currency(intent);
begin
  if coalesce(named, '') !~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
    raise exception 'PaymentIntent % names no milestone payment in its metadata '
    '(milestone_payment_id)', intent ->> 'id'
    using errcode = 'PT422';
  end if;
  select * into payment from public.milestone_payments as mp
  where mp.id = named::uuid
  for update;
  if not found then
    raise exception 'no milestone payment % for PaymentIntent %', named, intent ->> 'id'
    using errcode = 'PT404';
  end if;
  if (payment.amount_minor, payment.currency) is distinct from (amount, charged_currency) then
    raise exception 'PaymentIntent % is for % %, but milestone payment % is for % %',
    intent ->> 'id', amount, charged_currency, payment.id, payment.amount_minor, payment.currency
    using errcode = 'PT409';
  end if;
  return payment;
end
$$;

revoke all on function private.event_milestone_payment(jsonb) from public;
grant execute on function private.event_milestone_payment(jsonb) to payment_service;

/**
 * The funding attempt of `payment` that PaymentIntent `intent_id` belongs to: the attempt that
 * recorded it, else the current (latest) attempt if it has recorded none yet (the event came
 * before the function recorded it: it is recorded now). Null when the payment has no attempt
 * (a charge made outside begin_funding_attempt). Refused (PT409) when the intent is neither.
 */
create function private.event_funding_attempt(payment uuid, intent_id text)
returns public.funding_attempts
language plpgsql
set search_path = ''
as $$
declare
  latest public.funding_attempts;
  matched public.funding_attempts;
begin
  select * into latest from public.funding_attempts as a
  where a.milestone_payment_id = payment
  order by a.attempt desc
  limit 1
  for update;
  if not found then
    return null;
  end if;
  select * into matched from public.funding_attempts as a
  where a.milestone_payment_id = payment and a.processor_payment_intent_id = intent_id;
  if found then
    return matched;
  end if;
  if latest.processor_payment_intent_id is not null then
    raise exception 'PaymentIntent % is not the one recorded for attempt % of milestone '
    'payment % (%)', intent_id, latest.attempt, payment, latest.processor_payment_intent_id
    using errcode = 'PT409';
  end if;
  update public.funding_attempts as a
  set processor_payment_intent_id = intent_id
  where a.id = latest.id
  returning * into latest;
  return latest;
end
$$;

revoke all on function private.event_funding_attempt(uuid, text) from public;
grant execute on function private.event_funding_attempt(uuid, text) to payment_service;

/**
 * Apply one verified event's effects, as payment_service; returns 'processed' or 'ignored'.
 * Raises whatever the database's rules raise: the caller records it.
 */
create function private.apply_stripe_event_effects(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  payment public.milestone_payments;
  attempt_row public.funding_attempts;
  latest_attempt integer;
  open_inconsistency public.processor_inconsistencies;
  chargeback public.disputes;
  withdrawal public.withdrawals;
  amount bigint;
  object_currency char(3);
  failure_code text;
  failure_message text;
  named text;
  changed integer;
begin
  if jsonb_typeof(object) is distinct from 'object' or coalesce(object ->> 'id', '') = '' then
    raise exception 'event % has no data.object with an id', event ->> 'id'
    using errcode = 'PT422';
  end if;

  if event_type = 'payment_intent.succeeded' then
    payment := private.event_milestone_payment(object);
    if exists (
      select from public.webhook_events as e
      where (e.payload -> 'data' -> 'object' ->> 'payment_intent') = object ->> 'id'
        and e.type = 'charge.refunded'
    ) then
      raise exception 'PaymentIntent % was refunded before its success reached milestone '
      'payment %', object ->> 'id', payment.id
      using errcode = 'PT409';
    end if;
    attempt_row := private.event_funding_attempt(payment.id, object ->> 'id');
    select max(a.attempt) into latest_attempt from public.funding_attempts as a
    where a.milestone_payment_id = payment.id;
    if attempt_row.attempt is distinct from latest_attempt then
      raise exception 'PaymentIntent % is attempt % of milestone payment %, not its current '
      'attempt %', object ->> 'id', attempt_row.attempt, payment.id, latest_attempt
      using errcode = 'PT409';
    end if;
    if payment.processor_payment_intent_id = object ->> 'id' then
      return 'processed';
    end if;
    if payment.status not in ('pending', 'failed') then
      raise exception 'milestone payment % is %: PaymentIntent % can no longer fund it',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409';
    end if;
    perform private.fund_milestone_payment(
      payment.id, object ->> 'id', payment.amount_minor, payment.currency,
      'stripe:' || (object ->> 'id') || ':funding'
    );
    update public.funding_attempts as a set status = 'succeeded'
    where a.id = attempt_row.id and a.status <> 'succeeded';
    return 'processed';
  end if;

  if event_type in ('payment_intent.payment_failed', 'payment_intent.canceled') then
    payment := private.event_milestone_payment(object);
    if event_type = 'payment_intent.canceled' then
      failure_code := 'canceled';
      failure_message := 'The charge was canceled'
        || coalesce(' (' || (object ->> 'cancellation_reason') || ')', '');
    else
      failure_code := coalesce(
        object -> 'last_payment_error' ->> 'decline_code',
        object -> 'last_payment_error' ->> 'code', 'payment_failed'
      );
      failure_message := coalesce(
        object -> 'last_payment_error' ->> 'message', 'The charge was declined'
      );
    end if;
    attempt_row := private.event_funding_attempt(payment.id, object ->> 'id');
    if attempt_row.status = 'succeeded' then
      raise exception 'PaymentIntent % of milestone payment % succeeded: it does not fail',
      object ->> 'id', payment.id
      using errcode = 'PT409';
    end if;
    if attempt_row.id is not null then
      perform public.record_funding_failure(
        payment.id, attempt_row.attempt, failure_code, failure_message
      );
      select max(a.attempt) into latest_attempt from public.funding_attempts as a
      where a.milestone_payment_id = payment.id;
      if attempt_row.attempt < latest_attempt then
        return 'processed';
      end if;
    end if;
    if payment.status = 'pending' then
      update public.milestone_payments as mp set status = 'failed' where mp.id = payment.id;
    elsif payment.status <> 'failed' then
      raise exception 'milestone payment % is %: the failure of PaymentIntent % changes nothing',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409';
    end if;
    return 'processed';
  end if;

  if event_type = 'charge.refunded' then
    if coalesce(object ->> 'payment_intent', '') !~ '^pi_' then
      raise exception 'charge % names no PaymentIntent', object ->> 'id' using errcode = 'PT422';
    end if;
    amount := private.event_amount(object, 'amount_refunded');
    object_currency := private.event_currency(object);
    -- A charge the database refused, marked to be refunded: the refund settles it.
    select * into open_inconsistency from public.processor_inconsistencies as i
    where i.processor_object_id = object ->> 'payment_intent' and i.resolution is null
    order by i.created_at
    limit 1
    for update;
    if found then
      if (open_inconsistency.amount_minor, open_inconsistency.currency)
        is distinct from (amount, object_currency) then
        raise exception 'charge % refunds % %, but PaymentIntent % charged % %: only a whole '
        'refund settles it', object ->> 'id', amount, object_currency,
        object ->> 'payment_intent', open_inconsistency.amount_minor, open_inconsistency.currency
        using errcode = 'PT422';
      end if;
      update public.processor_inconsistencies as i
      set recovery = coalesce(i.recovery, 'refund'),
        resolution = 'Refunded by the processor: charge ' || (object ->> 'id') || ', event '
        || (event ->> 'id')
      where i.id = open_inconsistency.id;
      return 'processed';
    end if;
    select * into payment from public.milestone_payments as mp
    where mp.processor_payment_intent_id = object ->> 'payment_intent'
    for update;
    if not found then
      raise exception 'no milestone payment funded by PaymentIntent %', object ->> 'payment_intent'
      using errcode = 'PT404';
    end if;
    if (payment.amount_minor, payment.currency) is distinct from (amount, object_currency) then
      raise exception 'charge % refunds % % of milestone payment %, which is for % %: only a '
      'whole refund is applied', object ->> 'id', amount, object_currency, payment.id,
      payment.amount_minor, payment.currency
      using errcode = 'PT422';
    end if;
    if payment.status = 'refunded' then
      return 'processed';
    end if;
    update public.milestone_payments as mp set status = 'refunded' where mp.id = payment.id;
    insert into public.payment_transactions (
      user_id, type, status, amount_minor, currency, processor_transaction_id, description
    )
    values (
      payment.payer_id, 'refund', 'succeeded', amount, object_currency,
      coalesce(object -> 'refunds' -> 'data' -> 0 ->> 'id', object ->> 'id'),
      'Refund of milestone payment ' || payment.id
    );
    return 'processed';
  end if;

  if event_type = 'charge.dispute.created' then
    if coalesce(object ->> 'payment_intent', '') !~ '^pi_' then
      raise exception 'chargeback % names no PaymentIntent', object ->> 'id'
      using errcode = 'PT422';
    end if;
    amount := private.event_amount(object, 'amount');
    object_currency := private.event_currency(object);
    select * into payment from public.milestone_payments as mp
    where mp.processor_payment_intent_id = object ->> 'payment_intent'
    for update;
    if not found then
      raise exception 'no milestone payment funded by PaymentIntent %', object ->> 'payment_intent'
      using errcode = 'PT404';
    end if;
    if (payment.amount_minor, payment.currency) is distinct from (amount, object_currency) then
      raise exception 'chargeback % is for % %, but milestone payment % is for % %',
      object ->> 'id', amount, object_currency, payment.id, payment.amount_minor, payment.currency
      using errcode = 'PT409';
    end if;
    if exists (
      select from public.disputes as d where d.processor_dispute_id = object ->> 'id'
    ) then
      return 'processed';
    end if;
    if payment.status <> 'funded' then
      raise exception 'milestone payment % is %: chargeback % cannot dispute it',
      payment.id, payment.status, object ->> 'id'
      using errcode = 'PT409',
      hint = 'operations settle it: the processor has taken the money back';
    end if;
    insert into public.disputes (milestone_payment_id, opened_by, reason, processor_dispute_id)
    values (
      payment.id, payment.payer_id,
      left('Chargeback ' || (object ->> 'id') || ' at the card issuer: '
        || coalesce(nullif(object ->> 'reason', ''), 'no reason given'), 5000),
      object ->> 'id'
    );
    update public.milestone_payments as mp set status = 'disputed' where mp.id = payment.id;
    return 'processed';
  end if;

  if event_type = 'charge.dispute.closed' then
    select * into chargeback from public.disputes as d
    where d.processor_dispute_id = object ->> 'id'
    for update;
    if not found then
      raise exception 'no dispute for chargeback %', object ->> 'id' using errcode = 'PT404';
    end if;
    if object ->> 'status' in ('lost', 'charge_refunded') then
      if chargeback.status = 'resolved' and chargeback.outcome = 'refund' then
        return 'processed';
      end if;
      update public.disputes as d
      set status = 'resolved', outcome = 'refund',
        resolution = 'The card issuer decided chargeback ' || (object ->> 'id')
        || ' for the payer (' || (object ->> 'status') || '): the payment is refunded to the payer.'
      where d.id = chargeback.id;
    elsif object ->> 'status' in ('won', 'warning_closed') then
      if chargeback.status = 'withdrawn' then
        return 'processed';
      end if;
      update public.disputes as d
      set status = 'withdrawn',
        resolution = 'The card issuer decided chargeback ' || (object ->> 'id')
        || ' for the platform (' || (object ->> 'status')
        || '): the payment is held in escrow again.'
      where d.id = chargeback.id;
      perform set_config('payguard.settling_dispute', chargeback.id::text, true);
      update public.milestone_payments as mp set status = 'funded'
      where mp.id = chargeback.milestone_payment_id;
      perform set_config('payguard.settling_dispute', '', true);
    else
      raise exception 'chargeback % closed as %, which decides nothing here',
      object ->> 'id', coalesce(object ->> 'status', 'nothing')
      using errcode = 'PT422';
    end if;
    return 'processed';
  end if;

  if event_type in ('payout.paid', 'payout.failed') then
    amount := private.event_amount(object, 'amount');
    object_currency := private.event_currency(object);
    select * into withdrawal from public.withdrawals as w
    where w.processor_payout_id = object ->> 'id'
    for update;
    if not found then
      -- The event may come before the payout's id was recorded: the payout names its
      -- withdrawal in its metadata.
      named := object -> 'metadata' ->> 'withdrawal_id';
      if coalesce(named, '') ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
        select * into withdrawal from public.withdrawals as w
        where w.id = named::uuid and w.processor_payout_id is null
        for update;
      end if;
      if withdrawal.id is null then
        raise exception 'no withdrawal paid out by payout %', object ->> 'id'
        using errcode = 'PT404';
      end if;
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
      if withdrawal.processor_payout_id is null then
        update public.withdrawals as w
        set status = 'processing', processor_payout_id = object ->> 'id'
        where w.id = withdrawal.id and w.status = 'approved';
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
  end if;

  if event_type = 'account.updated' then
    update public.payout_methods as pm
    set verification_status = case
      when (object ->> 'payouts_enabled')::boolean then 'verified'
      when object -> 'requirements' ->> 'disabled_reason' like 'rejected%' then 'restricted'
      else 'pending'
    end
    where pm.processor_account_id = object ->> 'id';
    get diagnostics changed = row_count;
    if changed = 0 then
      raise exception 'no payout method of account %', object ->> 'id' using errcode = 'PT404';
    end if;
    return 'processed';
  end if;

  return 'ignored';
end
$$;

revoke all on function private.apply_stripe_event_effects(jsonb) from public;
grant execute on function private.apply_stripe_event_effects(jsonb) to payment_service;

/**
 * Record and apply one verified Stripe event (payment_service only). The event is recorded
 * in webhook_events by its id exactly once, and applied in the transaction that marks it:
 * - processed: applied; ignored: a type payguard does not act on, recorded;
 * - duplicate: already processed, ignored or refused (a concurrent second delivery waits for
 *   the first, then answers this); nothing changes;
 * - refused: the database's rules refused it (out of order, illegal move, wrong amount or
 *   currency, unknown object): recorded with its error, its effects rolled back; a refused
 *   charge (payment_intent.succeeded) or chargeback is also recorded as a processor
 *   inconsistency, for operations to recover;
 * - failed: an unexpected error (deadlock, serialization, lock timeout, ...): recorded with
 *   its error, its effects rolled back, applied again on the next delivery.
 * An event whose payload holds card data is recorded without its payload, as refused; a
 * PaymentIntent's client secret is never stored.
 * Returns {event_id, type, status, error?: {code, message}, inconsistency_id?, deliveries}.
 */
create function public.apply_stripe_event(event jsonb) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  event_id text := event ->> 'id';
  event_type text := event ->> 'type';
  recorded public.webhook_events;
  outcome text;
  error_state text;
  error_text text;
  inconsistency jsonb;
  object jsonb := event -> 'data' -> 'object';
  -- A PaymentIntent's client secret lets a client confirm it: it is not kept.
  stored jsonb := event #- '{data,object,client_secret}';
begin
  if jsonb_typeof(event) is distinct from 'object'
    or coalesce(event_id, '') !~ '^evt_[A-Za-z0-9]+$'
    or char_length(coalesce(event_type, '')) not between 1 and 100 then
    raise exception 'a Stripe event has an id evt_… and a type'
    using errcode = 'PT422';
  end if;
  begin
    insert into public.webhook_events (id, type, payload)
    values (event_id, event_type, stored)
    on conflict (id) do nothing;
  exception when sqlstate 'PT422' then
    -- The card-data guard refused the payload: keep the event's ids only.
    get stacked diagnostics error_text = message_text;
    stored := jsonb_build_object(
      'id', event_id, 'type', event_type,
      'data', jsonb_build_object('object', jsonb_build_object(
        'id', object ->> 'id', 'object', object ->> 'object'
      ))
    );
    insert into public.webhook_events (id, type, payload)
    values (event_id, event_type, stored)
    on conflict (id) do nothing;
    outcome := 'refused';
    error_state := 'PT422';
    error_text := 'the event holds card data: its payload was not stored (' || error_text || ')';
  end;
  -- A concurrent delivery of the same event waited on the insert above; it now sees the
  -- first one's outcome.
  select * into strict recorded from public.webhook_events as e where e.id = event_id for update;
  if recorded.status in ('processed', 'ignored', 'refused') then
    return jsonb_build_object(
      'event_id', event_id, 'type', recorded.type, 'status', 'duplicate',
      'recorded_status', recorded.status, 'deliveries', recorded.deliveries
    );
  end if;
  if recorded.status = 'failed' then
    update public.webhook_events as e set deliveries = e.deliveries + 1 where e.id = event_id
    returning * into recorded;
  end if;
  if outcome is null then
    begin
      outcome := private.apply_stripe_event_effects(event);
    exception when others then
      get stacked diagnostics error_state = returned_sqlstate, error_text = message_text;
      outcome := case when private.refuses_event(error_state) then 'refused' else 'failed' end;
    end;
  end if;
  if outcome = 'refused' and event_type in ('payment_intent.succeeded', 'charge.dispute.created')
    and error_state <> 'PT422' and object ->> 'id' ~ '^[a-z]+_[A-Za-z0-9]+$' then
    inconsistency := public.record_processor_inconsistency(
      case event_type
        when 'payment_intent.succeeded' then 'charge_refused' else 'chargeback_refused'
      end,
      object ->> 'id',
      (
        select mp.id from public.milestone_payments as mp
        where mp.id::text = object -> 'metadata' ->> 'milestone_payment_id'
          or mp.processor_payment_intent_id = object ->> 'payment_intent'
        limit 1
      ),
      case when (object ->> 'amount') ~ '^[1-9][0-9]{0,17}$' then (object ->> 'amount')::bigint end,
      case when (object ->> 'currency') ~ '^[A-Za-z]{3}$' then upper(object ->> 'currency') end,
      'The processor ' || case event_type
        when 'payment_intent.succeeded' then 'charged' else 'took back a charge'
      end || ' but the database refused it: ' || error_text,
      event_id
    );
  end if;
  update public.webhook_events as e
  set status = outcome::public.webhook_event_status,
    error_code = case when outcome in ('refused', 'failed') then error_state end,
    error_message = case when outcome in ('refused', 'failed') then left(error_text, 2000) end,
    processed_at = case when outcome <> 'failed' then now() end
  where e.id = event_id
  returning * into recorded;
  return jsonb_strip_nulls(jsonb_build_object(
    'event_id', event_id, 'type', event_type, 'status', outcome,
    'error', case when outcome in ('refused', 'failed') then
      jsonb_build_object('code', error_state, 'message', left(error_text, 2000))
    end,
    'inconsistency_id', inconsistency ->> 'id',
    'deliveries', recorded.deliveries
  ));
end
$$;

revoke all on function public.apply_stripe_event(jsonb)
from public, anon, authenticated, service_role;
grant execute on function public.apply_stripe_event(jsonb) to payment_service;
