-- Chargebacks reach the same state whatever order Stripe delivers their events in.
--
-- Stripe does not promise the order of its events. A charge.dispute.created delivered before
-- its payment_intent.succeeded was refused (PT404: no payment held the intent yet) and left as
-- an open chargeback_refused inconsistency; the success then funded the payment as if nothing
-- had happened, and the payer could release it to the contractor while the card issuer was
-- taking the money back. A charge.dispute.closed delivered before its charge.dispute.created
-- was refused the same way (no dispute yet), and the created that followed left the payment
-- disputed for ever. Now:
--   * payment_intent.succeeded funds the payment and then, in the same transaction, applies
--     every chargeback of its intent that was refused before it (a refused
--     charge.dispute.created, or a refused charge.dispute.closed whose created never came):
--     the payment is disputed with the chargeback's dispute row, and decided when the decision
--     came too. Should such a chargeback not apply (another amount or currency), the success is
--     refused: the payment is not funded while its money is being taken back;
--   * charge.dispute.created, once the dispute is open, applies a refused
--     charge.dispute.closed of the same chargeback;
--   * charge.dispute.closed of a chargeback with no dispute yet opens it from the closed
--     dispute itself (it names the intent, amount and reason) and then decides it; a
--     charge.dispute.created arriving afterwards finds it and changes nothing;
--   * the chargeback_refused / chargeback_closing_refused inconsistency the early event
--     opened is resolved when the event is applied late, naming the event that applied it.

/**
 * Resolves the open inconsistency of `inconsistency_kind` about chargeback `dispute_id`, now
 * that its event was applied after all. Security definer: payment_service records
 * inconsistencies and does not otherwise change them.
 */
create function private.resolve_chargeback_inconsistency(
  inconsistency_kind text, dispute_id text, resolution text
) returns void
language sql
security definer
set search_path = ''
as $$
  update public.processor_inconsistencies as i
  set resolution = left(resolve_chargeback_inconsistency.resolution, 2000)
  where i.kind = inconsistency_kind
    and i.kind in ('chargeback_refused', 'chargeback_closing_refused')
    and i.processor_object_id = dispute_id
    and i.resolution is null;
$$;

revoke all on function private.resolve_chargeback_inconsistency(text, text, text) from public;
grant execute on function private.resolve_chargeback_inconsistency(text, text, text)
to payment_service;

/**
 * The refused platform events of `event_type` about chargeback `dispute_id` and/or about
 * PaymentIntent `intent_id` (a null argument does not filter): the stored (redacted) event of
 * each chargeback, the latest the processor made when there are several. Closed disputes only
 * with a status that decides them.
 */
create function private.refused_chargeback_events(
  event_type text, intent_id text, dispute_id text default null
) returns setof jsonb
language sql
stable
set search_path = ''
as $$
  select latest.payload from (
    select distinct on (e.payload -> 'data' -> 'object' ->> 'id') e.payload
    from public.webhook_events as e
    where e.type = event_type
      and e.status = 'refused'
      and nullif(e.payload ->> 'account', '') is null
      and jsonb_typeof(e.payload -> 'data' -> 'object') = 'object'
      and (dispute_id is null or e.payload -> 'data' -> 'object' ->> 'id' = dispute_id)
      and (intent_id is null or e.payload -> 'data' -> 'object' ->> 'payment_intent' = intent_id)
      -- Only a decision is applied late: a closed dispute of another status decides nothing.
      and (
        event_type <> 'charge.dispute.closed'
        or e.payload -> 'data' -> 'object' ->> 'status'
        in ('lost', 'charge_refunded', 'won', 'warning_closed')
      )
    order by e.payload -> 'data' -> 'object' ->> 'id',
      case when e.payload ->> 'created' ~ '^[0-9]{1,12}$'
        then (e.payload ->> 'created')::bigint end desc nulls last,
      e.received_at desc
  ) as latest
$$;

revoke all on function private.refused_chargeback_events(text, text, text) from public;
grant execute on function private.refused_chargeback_events(text, text, text)
to payment_service;

/**
 * charge.dispute.created: a chargeback disputes the funded payment its PaymentIntent funded,
 * then its decision is applied if it came first.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create or replace function private.apply_charge_dispute_created(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  payment public.milestone_payments;
  amount bigint;
  object_currency char(3);
  decision jsonb;
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
    using errcode = 'PT404',
    hint = 'applied when the PaymentIntent''s success funds its payment';
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
  -- The card issuer's decision may have come first: it applies now.
  for decision in
    select p from private.refused_chargeback_events(
      'charge.dispute.closed', null, object ->> 'id'
    ) as p
  loop
    perform private.apply_charge_dispute_closed(decision);
    perform private.resolve_chargeback_inconsistency(
      'chargeback_closing_refused', object ->> 'id',
      'Applied late: event ' || (decision ->> 'id') || ' came before chargeback '
      || (object ->> 'id') || ' was opened, and was applied when event ' || (event ->> 'id')
      || ' opened it'
    );
  end loop;
  return 'processed';
end
$$;

/**
 * charge.dispute.closed: the card issuer's decision settles the chargeback's dispute, which
 * is opened from the closed dispute first when its charge.dispute.created has not come.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create or replace function private.apply_charge_dispute_closed(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  chargeback public.disputes;
begin
  if object ->> 'status' not in ('lost', 'charge_refunded', 'won', 'warning_closed') then
    raise exception 'chargeback % closed as %, which decides nothing here',
    object ->> 'id', coalesce(object ->> 'status', 'nothing')
    using errcode = 'PT422';
  end if;
  select * into chargeback from public.disputes as d
  where d.processor_dispute_id = object ->> 'id'
  for update;
  if not found then
    -- Its charge.dispute.created has not come (yet): the closed dispute names the same
    -- PaymentIntent, amount and reason, so it opens the dispute itself.
    perform private.apply_charge_dispute_created(event);
    select * into chargeback from public.disputes as d
    where d.processor_dispute_id = object ->> 'id'
    for update;
    if not found then
      raise exception 'no dispute for chargeback %', object ->> 'id' using errcode = 'PT404';
    end if;
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
  else
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
  end if;
  return 'processed';
end
$$;

/**
 * payment_intent.succeeded: fund the milestone payment its metadata names, with its current
 * attempt's PaymentIntent, unless the intent was refunded first or the payment moved on; then
 * apply the chargebacks of the intent that came before it.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create or replace function private.apply_payment_intent_succeeded(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  payment public.milestone_payments;
  attempt_row public.funding_attempts;
  latest_attempt integer;
  early jsonb;
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
  -- Chargebacks of this charge that came before its success: the payment is disputed (and
  -- decided) in this transaction, never left releasable. One that cannot apply refuses the
  -- success with it.
  for early in
    select p from private.refused_chargeback_events(
      'charge.dispute.created', object ->> 'id'
    ) as p
  loop
    perform private.apply_charge_dispute_created(early);
    perform private.resolve_chargeback_inconsistency(
      'chargeback_refused', early -> 'data' -> 'object' ->> 'id',
      'Applied late: event ' || (early ->> 'id') || ' came before the success of PaymentIntent '
      || (object ->> 'id') || ', and was applied when event ' || (event ->> 'id')
      || ' funded milestone payment ' || payment.id
    );
  end loop;
  for early in
    select p from private.refused_chargeback_events(
      'charge.dispute.closed', object ->> 'id'
    ) as p
  loop
    perform private.apply_charge_dispute_closed(early);
    perform private.resolve_chargeback_inconsistency(
      'chargeback_closing_refused', early -> 'data' -> 'object' ->> 'id',
      'Applied late: event ' || (early ->> 'id') || ' came before the success of PaymentIntent '
      || (object ->> 'id') || ', and was applied when event ' || (event ->> 'id')
      || ' funded milestone payment ' || payment.id
    );
  end loop;
  return 'processed';
end
$$;
