-- A money event is applied with its card-like text redacted, and a refused one is never lost.
--
-- Stripe's objects carry text the payer controls (billing_details.name, a description, …).
-- Text that looks like a card number made the card-data guard refuse the event's payload, and
-- apply_stripe_event then refused the whole event for good, with no inconsistency recorded
-- (only a refusal other than PT422 recorded one): a real refund left the payment funded, a
-- real charge left it pending, and nobody was told. Only payment_intent.succeeded and
-- charge.dispute.created recorded an inconsistency when refused at all. The class is "a
-- money event the processor reports is dropped without a trace". Now:
--   * the stored payload is the event with its card-like values redacted
--     (private.event_without_card_data: a value holding card data is replaced, a key naming a
--     card number or verification value is dropped), and the event is applied from that
--     redacted payload, since its effects need only ids, amounts and currencies;
--   * every refused money event (payment_intent.succeeded, charge.refunded,
--     charge.dispute.created / closed, payout.paid / failed) records an open processor
--     inconsistency, whatever its SQLSTATE; an event of a connected account that should have
--     been the platform's records one of kind connected_account_event, naming no payment, so
--     that no recovery funds anything from it;
--   * a body that is not a JSON object (apply_stripe_event('[1]')) is refused with PT422
--     before anything reads it, and an event whose data.object is not an object is recorded
--     as refused (PT422) instead of failing on the path that drops the client secret.

/**
 * `candidate` with every value that holds card data replaced by a marker and every key that
 * names a card number or a verification value dropped (its value with it), at any depth; the
 * ids, amounts and currencies of a Stripe object stay as they are. Security definer: the
 * card-data guard's helpers are the owner's; this reads nothing.
 */
create function private.event_without_card_data(candidate jsonb) returns jsonb
language plpgsql
immutable
security definer
set search_path = ''
as $$
declare
  removed constant jsonb := to_jsonb('[removed: it held card data]'::text);
  cleaned jsonb;
  field record;
begin
  if candidate is null or not private.holds_card_data(candidate) then
    return candidate;
  end if;
  if jsonb_typeof(candidate) = 'object' then
    cleaned := '{}';
    for field in select e.key, e.value from jsonb_each(candidate) as e loop
      if not (
        private.holds_card_number(field.key) or private.is_card_verification_key(field.key)
      ) then
        cleaned := cleaned
          || jsonb_build_object(field.key, private.event_without_card_data(field.value));
      end if;
    end loop;
  elsif jsonb_typeof(candidate) = 'array' then
    select coalesce(jsonb_agg(private.event_without_card_data(e.value) order by e.n), '[]')
    into cleaned
    from jsonb_array_elements(candidate) with ordinality as e (value, n);
  else
    return removed;
  end if;
  -- Digits spread over an array's items may still spell a card number together.
  if private.holds_card_data(cleaned) then
    return removed;
  end if;
  return cleaned;
end
$$;

revoke all on function private.event_without_card_data(jsonb) from public;
grant execute on function private.event_without_card_data(jsonb) to payment_service;

/**
 * `detail` with anything that looks like a card number removed, for an inconsistency's
 * detail. Security definer, like event_without_card_data.
 */
create function private.event_detail_without_card_numbers(detail text) returns text
language sql
immutable
security definer
set search_path = ''
as $$
  select private.without_card_numbers(detail)
$$;

revoke all on function private.event_detail_without_card_numbers(text) from public;
grant execute on function private.event_detail_without_card_numbers(text) to payment_service;

/**
 * The kind of inconsistency a refused money event records, or null when the event moves no
 * money. An event of a connected account that should have been the platform's is one kind
 * of its own, whatever its type.
 */
create function private.refused_event_inconsistency_kind(event_type text, connected text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when event_type not in (
      'payment_intent.succeeded', 'charge.refunded', 'charge.dispute.created',
      'charge.dispute.closed', 'payout.paid', 'payout.failed'
    ) then null
    when connected is not null and event_type not like 'payout.%' then 'connected_account_event'
    when event_type = 'payment_intent.succeeded' then 'charge_refused'
    when event_type = 'charge.refunded' then 'refund_refused'
    when event_type = 'charge.dispute.created' then 'chargeback_refused'
    when event_type = 'charge.dispute.closed' then 'chargeback_closing_refused'
    else 'payout_refused'
  end
$$;

revoke all on function private.refused_event_inconsistency_kind(text, text) from public;
grant execute on function private.refused_event_inconsistency_kind(text, text)
to payment_service;

/**
 * Records a Stripe event once by its id and applies it in the same transaction (see
 * 20261205020700_stripe_event_application.sql): the payload stored and applied is the event
 * with its card-like values redacted, and every refused money event records an inconsistency.
 */
create or replace function public.apply_stripe_event(event jsonb)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  event_id text;
  event_type text;
  connected text;
  recorded public.webhook_events;
  outcome text;
  error_state text;
  error_text text;
  inconsistency jsonb;
  inconsistency_kind text;
  object jsonb;
  stored jsonb;
begin
  if jsonb_typeof(event) is distinct from 'object'
    or coalesce(event ->> 'id', '') !~ '^evt_[A-Za-z0-9]+$'
    or char_length(coalesce(event ->> 'type', '')) not between 1 and 100 then
    raise exception 'a Stripe event has an id evt_… and a type'
    using errcode = 'PT422';
  end if;
  event_id := event ->> 'id';
  event_type := event ->> 'type';
  connected := nullif(event ->> 'account', '');
  -- A PaymentIntent's client secret lets a client confirm it: it is not kept. Card-like text
  -- is redacted; what is stored is what is applied.
  stored := private.event_without_card_data(case
    when jsonb_typeof(event -> 'data' -> 'object') = 'object'
      then event #- '{data,object,client_secret}'
    else event
  end);
  object := stored -> 'data' -> 'object';
  if jsonb_typeof(stored) <> 'object' or coalesce(stored ->> 'id', '') <> event_id then
    -- The event could not be redacted and keep its id: its type alone is kept, nothing applied.
    object := null;
    stored := jsonb_build_object('id', event_id, 'type', event_type);
    outcome := 'refused';
    error_state := 'PT422';
    error_text := 'the event holds card data that could not be redacted: it was not applied';
  end if;
  insert into public.webhook_events (id, type, payload)
  values (event_id, event_type, stored)
  on conflict (id) do nothing;
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
      outcome := private.apply_stripe_event_effects(stored);
    exception when others then
      get stacked diagnostics error_state = returned_sqlstate, error_text = message_text;
      outcome := case when private.refuses_event(error_state) then 'refused' else 'failed' end;
    end;
  end if;
  inconsistency_kind := private.refused_event_inconsistency_kind(event_type, connected);
  if outcome = 'refused' and inconsistency_kind is not null
    and object ->> 'id' ~ '^[a-z]+_[A-Za-z0-9]+$' then
    inconsistency := public.record_processor_inconsistency(
      inconsistency_kind,
      object ->> 'id',
      case when inconsistency_kind <> 'connected_account_event' then (
        select mp.id from public.milestone_payments as mp
        where mp.id::text = object -> 'metadata' ->> 'milestone_payment_id'
          or mp.processor_payment_intent_id = object ->> 'payment_intent'
        limit 1
      ) end,
      case when (object ->> 'amount') ~ '^[1-9][0-9]{0,17}$' then (object ->> 'amount')::bigint end,
      case when (object ->> 'currency') ~ '^[A-Za-z]{3}$' then upper(object ->> 'currency') end,
      private.event_detail_without_card_numbers(
        'The processor ' || case inconsistency_kind
          when 'charge_refused' then 'charged'
          when 'chargeback_refused' then 'took back a charge'
          else 'reported ' || event_type || coalesce(' on account ' || connected, '')
        end || ' but the database refused it: ' || error_text
      ),
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
