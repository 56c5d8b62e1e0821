-- One function per kind of Stripe event.
--
-- private.apply_stripe_event_effects held the effects of every event type in one 260-line
-- function, recreated whole by each migration that changed one of them, so that two changes
-- to two event types touched the same definition and a reader looked for one handler in the
-- middle of all. It keeps what every event shares (the object has an id; payments, charges
-- and chargebacks are the platform's, never a connected account's) and hands each type to
-- its own function, as it did already for charge.refunded and account.updated. The bodies
-- are moved unchanged.

/**
 * payment_intent.succeeded: fund the milestone payment its metadata names, with its current
 * attempt's PaymentIntent, unless the intent was refunded first or the payment moved on.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create function private.apply_payment_intent_succeeded(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  payment public.milestone_payments;
  attempt_row public.funding_attempts;
  latest_attempt integer;
begin
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
end
$$;

revoke all on function private.apply_payment_intent_succeeded(jsonb) from public;
grant execute on function private.apply_payment_intent_succeeded(jsonb) to payment_service;

/**
 * payment_intent.payment_failed / canceled: the attempt fails with its reason, and the payment
 * with it when that was its current attempt.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create function private.apply_payment_intent_failure(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  event_type text := event ->> 'type';
  payment public.milestone_payments;
  attempt_row public.funding_attempts;
  latest_attempt integer;
  failure_code text;
  failure_message text;
begin
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
end
$$;

revoke all on function private.apply_payment_intent_failure(jsonb) from public;
grant execute on function private.apply_payment_intent_failure(jsonb) to payment_service;

/**
 * charge.dispute.created: a chargeback disputes the funded payment its PaymentIntent funded.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create function private.apply_charge_dispute_created(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  payment public.milestone_payments;
  amount bigint;
  object_currency char(3);
begin
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
end
$$;

revoke all on function private.apply_charge_dispute_created(jsonb) from public;
grant execute on function private.apply_charge_dispute_created(jsonb) to payment_service;

/**
 * charge.dispute.closed: the card issuer's decision settles the chargeback's dispute.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create function private.apply_charge_dispute_closed(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  chargeback public.disputes;
begin
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
end
$$;

revoke all on function private.apply_charge_dispute_closed(jsonb) from public;
grant execute on function private.apply_charge_dispute_closed(jsonb) to payment_service;

/**
 * payout.paid / payout.failed: complete or fail the withdrawal the payout pays out, on the
 * withdrawal's own connected account, for its amount and currency.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create function private.apply_payout_event(event jsonb) returns text
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
  -- A payout is made on the withdrawal's connected account, whichever way it was found.
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
end
$$;

revoke all on function private.apply_payout_event(jsonb) from public;
grant execute on function private.apply_payout_event(jsonb) to payment_service;

/**
 * The effects of Stripe event `event` (apply_stripe_event calls it in the transaction that
 * records the event): 'processed', or 'ignored' for a type that moves nothing here. What every
 * event shares is checked here; each type's effects are its own function's.
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

  if event_type in ('payout.paid', 'payout.failed') then
    return private.apply_payout_event(event);
  end if;

  if event_type = 'account.updated' then
    return private.apply_account_updated(event);
  end if;

  return 'ignored';
end
$$;
