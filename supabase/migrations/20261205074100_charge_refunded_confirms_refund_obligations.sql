-- charge.refunded confirms the refunds payguard owes.
--
-- A payment that staff refunded or split in a dispute owes its payer a refund
-- (20261205074000_refund_obligations.sql); its charge.refunded found the payment already
-- refunded and changed nothing, and a split's refund (the payer's share, not the whole charge)
-- was refused as partial. Now the refund of a charge that payguard owes confirms the obligation:
-- for the payment the intent funded (refunded: the whole charge; split: the payer's share), or,
-- when no payment holds the intent, for the recovered charge, before its inconsistency is
-- settled. The refund is recorded in payment_transactions once. An amount other than the one
-- owed is refused (PT422) and so reported as a refund_refused inconsistency. Everything else is
-- as in 20261205040200_refund_of_a_funded_payment.sql.

/**
 * charge.refunded: the refund `object.amount_refunded` of PaymentIntent
 * `object.payment_intent`. It confirms the refund payguard owes for the payment the intent
 * funded; otherwise it refunds that payment when the processor refunded it whole; only when no
 * payment holds the intent does it confirm the recovered charge's refund and settle the open
 * inconsistency (charge_unrecorded / charge_refused) that names it.
 */
create or replace function private.apply_charge_refunded(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  payment public.milestone_payments;
  open_inconsistency public.processor_inconsistencies;
  owed private.refund_obligations;
  amount bigint;
  object_currency char(3);
  refund_id text;
begin
  if coalesce(object ->> 'payment_intent', '') !~ '^pi_' then
    raise exception 'charge % names no PaymentIntent', object ->> 'id' using errcode = 'PT422';
  end if;
  amount := private.event_amount(object, 'amount_refunded');
  object_currency := private.event_currency(object);
  refund_id := coalesce(object -> 'refunds' -> 'data' -> 0 ->> 'id', object ->> 'id');
  select * into payment from public.milestone_payments as mp
  where mp.processor_payment_intent_id = object ->> 'payment_intent'
  for update;
  if found then
    owed := private.confirm_refund_obligation(
      payment.id, object ->> 'payment_intent', amount, object_currency, refund_id
    );
    if owed.id is not null then
      insert into public.payment_transactions (
        user_id, type, status, amount_minor, currency, processor_transaction_id, description
      )
      values (
        payment.payer_id, 'refund', 'succeeded', amount, object_currency,
        coalesce(owed.processor_refund_id, refund_id),
        'Refund of milestone payment ' || payment.id
      )
      on conflict (processor_transaction_id) do nothing;
      return 'processed';
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
      payment.payer_id, 'refund', 'succeeded', amount, object_currency, refund_id,
      'Refund of milestone payment ' || payment.id
    );
    -- A recovery's refund of this same charge, sent before the charge funded the payment after
    -- all, is the refund just applied.
    perform private.confirm_refund_obligation(
      null, object ->> 'payment_intent', amount, object_currency, refund_id
    );
    return 'processed';
  end if;
  -- No payment holds the charge: a charge the database refused or did not record, marked to
  -- be refunded; the refund confirms what payguard owed and settles it.
  select * into open_inconsistency from public.processor_inconsistencies as i
  where i.processor_object_id = object ->> 'payment_intent' and i.resolution is null
    and private.settled_by_funding(i.kind)
  order by i.created_at
  limit 1
  for update;
  if not found then
    raise exception 'no milestone payment funded by PaymentIntent %', object ->> 'payment_intent'
    using errcode = 'PT404';
  end if;
  if (open_inconsistency.amount_minor, open_inconsistency.currency)
    is distinct from (amount, object_currency) then
    raise exception 'charge % refunds % %, but PaymentIntent % charged % %: only a whole '
    'refund settles it', object ->> 'id', amount, object_currency,
    object ->> 'payment_intent', open_inconsistency.amount_minor, open_inconsistency.currency
    using errcode = 'PT422';
  end if;
  perform private.confirm_refund_obligation(
    null, object ->> 'payment_intent', amount, object_currency, refund_id
  );
  update public.processor_inconsistencies as i
  set recovery = coalesce(i.recovery, 'refund'),
    resolution = 'Refunded by the processor: charge ' || (object ->> 'id') || ', event '
    || (event ->> 'id')
  where i.id = open_inconsistency.id;
  return 'processed';
end
$$;
