-- A charge the processor refunded is never used to fund its payment.
--
-- A payment_intent.succeeded that arrives after the charge.refunded of the same intent is
-- refused, and recorded as a charge_refused inconsistency. Its recovery then funded the
-- payment when it was still pending, with money the payer already had back: the recovery asked
-- whether the payment could be funded, not whether the charge still stood.
--
-- Now recovery looks first for a charge.refunded event of the intent that was refused (having
-- come before the success, it found nothing to refund; one that failed is applied again on its
-- next delivery, and one that was processed already settled the charge). When there is one,
-- the inconsistency is resolved as refunded, naming that event, and nothing is funded or
-- refunded again. A payment that the same intent funded is still resolved as funded, before
-- anything else.

create or replace function public.recover_processor_inconsistency(inconsistency_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  found_one public.processor_inconsistencies;
  payment public.milestone_payments;
begin
  -- The payment first, then the record, in the order apply_stripe_event takes them.
  perform from public.milestone_payments as mp
  where mp.id = (
    select i.milestone_payment_id from public.processor_inconsistencies as i
    where i.id = recover_processor_inconsistency.inconsistency_id
  )
  for update;
  select * into found_one from public.processor_inconsistencies as i
  where i.id = recover_processor_inconsistency.inconsistency_id
  for update;
  if not found then
    raise exception 'no processor inconsistency %', inconsistency_id using errcode = 'PT404';
  end if;
  if found_one.processor_object_id !~ '^pi_' or found_one.milestone_payment_id is null then
    raise exception 'processor inconsistency % (%) is not a charge of a milestone payment: '
    'operations settle it', found_one.id, found_one.kind
    using errcode = 'PT409';
  end if;
  if found_one.resolution is null then
    select * into payment from public.milestone_payments as mp
    where mp.id = found_one.milestone_payment_id
    for update;
    if payment.processor_payment_intent_id = found_one.processor_object_id then
      -- The charge funded its payment already (by the webhook): nothing to refund.
      update public.processor_inconsistencies as i
      set recovery = 'fund',
        resolution = 'Funded: milestone payment ' || payment.id || ' was funded with '
        || 'PaymentIntent ' || found_one.processor_object_id
      where i.id = found_one.id
      returning * into found_one;
    elsif exists (
      select from public.webhook_events as e
      where e.type = 'charge.refunded' and e.status = 'refused'
        and e.payload -> 'data' -> 'object' ->> 'payment_intent' = found_one.processor_object_id
    ) then
      -- The processor refunded this charge already, and its refund was refused (it came before
      -- the success): the payer has the money back, so nothing is funded or refunded again.
      update public.processor_inconsistencies as i
      set recovery = 'refund',
        resolution = 'Refunded: the processor refunded PaymentIntent '
        || found_one.processor_object_id || ' (charge.refunded '
        || (
          select e.id from public.webhook_events as e
          where e.type = 'charge.refunded' and e.status = 'refused'
            and e.payload -> 'data' -> 'object' ->> 'payment_intent'
            = found_one.processor_object_id
          order by e.received_at limit 1
        ) || ')'
      where i.id = found_one.id
      returning * into found_one;
    elsif found_one.recovery is null
      and payment.status in ('pending', 'failed')
      and (payment.amount_minor, payment.currency)
      = (found_one.amount_minor, found_one.currency)
      and not exists (
        select from public.funding_attempts as a
        where a.milestone_payment_id = payment.id and a.status = 'open'
          and a.processor_payment_intent_id is distinct from found_one.processor_object_id
          and a.processor_payment_intent_id is not null
      ) then
      -- The open attempt that recorded no intent is the one this charge was made for.
      update public.funding_attempts as a
      set processor_payment_intent_id = found_one.processor_object_id
      where a.milestone_payment_id = payment.id and a.status = 'open'
        and a.processor_payment_intent_id is null
        and not exists (
          select from public.funding_attempts as b
          where b.processor_payment_intent_id = found_one.processor_object_id
        );
      perform private.fund_milestone_payment(
        payment.id, found_one.processor_object_id, payment.amount_minor, payment.currency,
        'processor_inconsistency:' || found_one.id || ':fund'
      );
      update public.funding_attempts as a
      set status = 'succeeded'
      where a.milestone_payment_id = payment.id
        and a.processor_payment_intent_id = found_one.processor_object_id
        and a.status <> 'succeeded';
      -- Funding resolved it (private.resolve_inconsistencies_of_funding).
      select * into found_one from public.processor_inconsistencies as i
      where i.id = found_one.id;
    elsif found_one.recovery is null then
      update public.processor_inconsistencies as i
      set recovery = 'refund'
      where i.id = found_one.id
      returning * into found_one;
    end if;
  end if;
  return jsonb_build_object(
    'id', found_one.id,
    'recovery', found_one.recovery,
    'resolved', found_one.resolution is not null,
    'payment_intent_id', found_one.processor_object_id,
    'amount_minor', found_one.amount_minor,
    'currency', found_one.currency,
    'refund_idempotency_key', 'processor_inconsistency:' || found_one.id || ':refund'
  );
end
$$;
