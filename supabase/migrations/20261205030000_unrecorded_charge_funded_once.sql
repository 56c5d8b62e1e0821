-- A charge that funded its payment is never refunded as if it had not.
--
-- A charge the database did not record (charge_unrecorded, from the milestone-payments
-- function) or refused (charge_refused, from apply_stripe_event) is an open inconsistency
-- until it is recovered: funded, or marked to be refunded. But the charge may fund its
-- payment by another path meanwhile: Stripe's payment_intent.succeeded webhook records the
-- intent on the open attempt and funds the payment, and the inconsistency stayed open, so its
-- recovery then found the payment no longer fundable and marked the charge to be refunded:
-- money refunded out of a funded escrow. The recovery also took an open attempt with no
-- PaymentIntent recorded (the very attempt whose record failed) for another charge in
-- flight, and marked the charge to be refunded instead of funding with it.
--
-- The class is "the inconsistency outlives the fact that settles it". Now:
--   * funding a payment with a PaymentIntent (whichever path: the webhook, a recovery, a
--     direct call) resolves, in that transaction, every open charge_unrecorded or
--     charge_refused inconsistency that names that intent: its recovery is 'fund';
--   * such an inconsistency recorded after its payment was already funded by that intent
--     (the webhook won the race against the function's report) is recorded resolved;
--   * recover_processor_inconsistency treats an open attempt with no PaymentIntent recorded
--     as the charge's own attempt (it funds, and records the intent on it), and resolves
--     without a refund an inconsistency whose payment that same intent already funded;
--   * an inconsistency marked to be refunded whose payment the charge funds before the
--     refund is made is resolved as funded: its recovery becomes 'fund', the only change
--     of a recovery once set, and only together with its resolution.

/** The kinds of inconsistency that a charge's funding of its payment settles. */
create function private.settled_by_funding(kind text) returns boolean
language sql
immutable
set search_path = ''
as $$
  select kind in ('charge_unrecorded', 'charge_refused')
$$;

revoke all on function private.settled_by_funding(text) from public;
grant execute on function private.settled_by_funding(text) to payment_service;

/**
 * AFTER UPDATE trigger on milestone_payments: a payment funded with a PaymentIntent resolves
 * the open inconsistencies about that charge (recovery 'fund'). Security definer: a funding
 * by any path settles them, whoever funds.
 */
create function private.resolve_inconsistencies_of_funding() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.processor_inconsistencies as i
  set recovery = 'fund',
    resolution = 'Funded: milestone payment ' || new.id || ' was funded with PaymentIntent '
    || new.processor_payment_intent_id
  where i.processor_object_id = new.processor_payment_intent_id
    and private.settled_by_funding(i.kind)
    and i.resolution is null;
  return null;
end
$$;

revoke all on function private.resolve_inconsistencies_of_funding() from public;

create trigger resolve_inconsistencies_of_funding
after update of status on public.milestone_payments
for each row
when (
  new.status = 'funded' and old.status in ('pending', 'failed')
  and new.processor_payment_intent_id is not null
)
execute function private.resolve_inconsistencies_of_funding();

/**
 * BEFORE INSERT trigger on processor_inconsistencies (named to fire before
 * new_processor_inconsistency, which times the resolution): a charge that already funded its
 * payment is recorded resolved, recovered by that funding.
 */
create function private.inconsistency_already_funded() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  funded uuid;
begin
  if new.resolution is null and private.settled_by_funding(new.kind) then
    select mp.id into funded from public.milestone_payments as mp
    where mp.processor_payment_intent_id = new.processor_object_id;
    if found then
      new.recovery := 'fund';
      new.resolution := 'Funded already: milestone payment ' || funded
        || ' was funded with PaymentIntent ' || new.processor_object_id
        || ' before this was recorded';
    end if;
  end if;
  return new;
end
$$;

revoke all on function private.inconsistency_already_funded() from public;

create trigger inconsistency_already_funded
before insert on public.processor_inconsistencies
for each row execute function private.inconsistency_already_funded();

/**
 * An inconsistency is a record, as in 20261205020600_processor_inconsistencies.sql: never
 * deleted, its facts never change, its recovery and its resolution are each set once. One
 * exception: a charge marked to be refunded that funds its payment before it is refunded is
 * resolved as funded, its recovery turning from 'refund' to 'fund' with that resolution.
 */
create or replace function private.keep_processor_inconsistency() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    raise exception 'processor inconsistency % is a record: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.kind, new.processor_object_id, new.milestone_payment_id, new.webhook_event_id,
    new.amount_minor, new.currency, new.detail, new.created_at
  ) is distinct from (
    old.id, old.kind, old.processor_object_id, old.milestone_payment_id, old.webhook_event_id,
    old.amount_minor, old.currency, old.detail, old.created_at
  ) then
    raise exception 'processor inconsistency %: what was found never changes', old.id
    using errcode = 'PT409';
  end if;
  if new.recovery is distinct from old.recovery and old.recovery is not null
    and not (
      old.recovery = 'refund' and new.recovery = 'fund' and old.resolution is null
      and new.resolution is not null and private.settled_by_funding(old.kind)
      and exists (
        select from public.milestone_payments as mp
        where mp.processor_payment_intent_id = old.processor_object_id
      )
    ) then
    raise exception 'processor inconsistency % is recovered by %: set once', old.id, old.recovery
    using errcode = 'PT409';
  end if;
  if new.resolution is distinct from old.resolution and old.resolution is not null then
    raise exception 'processor inconsistency % was resolved at %: its resolution is set once',
    old.id, old.resolved_at
    using errcode = 'PT409';
  end if;
  new.resolved_at := case
    when old.resolution is null and new.resolution is not null then now() else old.resolved_at
  end;
  return new;
end
$$;

/**
 * Recover from a charge the database did not record (payment_service), as in
 * 20261205020600_processor_inconsistencies.sql: fund the milestone payment with it when the
 * payment is still fundable (pending or failed, same amount and currency, and no attempt in
 * flight with another PaymentIntent: an open attempt with none recorded is the charge's own,
 * and the intent is recorded on it), else mark the charge to be refunded. A payment that the
 * same PaymentIntent already funded is not refunded: the inconsistency is resolved as funded.
 * The refund itself is sent by the caller, with the returned idempotency key, only while the
 * answer says `recovery: 'refund'` and `resolved: false`; charge.refunded resolves it. Calling
 * it again returns the same decision. Only charges (`pi_…`) are recovered here (PT409).
 * Returns {id, recovery: 'fund'|'refund', resolved, payment_intent_id, amount_minor,
 * currency, refund_idempotency_key}.
 */
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
