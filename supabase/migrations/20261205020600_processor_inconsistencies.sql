-- Where the processor and the database disagree about money, for operations to see and settle:
-- above all a charge the processor made that the database refused (or could not be reached to
-- record). Each is recorded once per kind and processor object, never deleted; its recovery
-- ('fund' or 'refund') and its resolution are each set once. `payguard reconcile` reports the
-- unresolved ones. A refused payment_intent.succeeded records its own (apply_stripe_event);
-- the Edge Functions record the others.

/**
 * A disagreement between the processor and the database: its kind (charge_refused,
 * charge_unrecorded, chargeback_refused, ...), the processor's object (`pi_…`, `du_…`, `po_…`),
 * the milestone payment it concerns, the amount, a detail for operations, then how it is
 * recovered and when it was resolved.
 */
create table public.processor_inconsistencies (
  id uuid primary key default gen_random_uuid(),
  kind text not null check (kind ~ '^[a-z][a-z_]{2,49}$'),
  processor_object_id text not null check (processor_object_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  milestone_payment_id uuid references public.milestone_payments (id),
  webhook_event_id text check (webhook_event_id ~ '^evt_[A-Za-z0-9]+$'),
  amount_minor bigint check (amount_minor > 0),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  detail text check (char_length(detail) <= 2000),
  recovery text check (recovery in ('fund', 'refund')),
  resolution text check (char_length(resolution) between 1 and 2000),
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (kind, processor_object_id),
  check ((resolution is null) = (resolved_at is null))
);

create index processor_inconsistencies_milestone_payment_id_idx
on public.processor_inconsistencies (milestone_payment_id);
create index processor_inconsistencies_processor_object_id_idx
on public.processor_inconsistencies (processor_object_id);

create trigger keep_row_timestamps
before insert or update on public.processor_inconsistencies
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.processor_inconsistencies
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('public.processor_inconsistencies');

create trigger audit_trail
after insert or update or delete on public.processor_inconsistencies
for each row execute function private.capture_audit_row('id');
select private.renew_audit_trail('public.processor_inconsistencies');

create trigger refuse_unaudited_truncate
before truncate on public.processor_inconsistencies
for each statement execute function private.refuse_unaudited_truncate();

/**
 * An inconsistency is a record: never deleted, its facts never change, its recovery and its
 * resolution are each set once (the time of the resolution is the database's).
 */
create function private.keep_processor_inconsistency() returns trigger
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
  if new.recovery is distinct from old.recovery and old.recovery is not null then
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

revoke all on function private.keep_processor_inconsistency() from public;

create trigger keep_processor_inconsistency
before update or delete on public.processor_inconsistencies
for each row execute function private.keep_processor_inconsistency();

create function private.new_processor_inconsistency() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.resolved_at := case when new.resolution is not null then now() end;
  return new;
end
$$;

revoke all on function private.new_processor_inconsistency() from public;

create trigger new_processor_inconsistency
before insert on public.processor_inconsistencies
for each row execute function private.new_processor_inconsistency();

/**
 * Record an inconsistency found at the border (payment_service): `kind` (a lower-case word,
 * charge_refused for a charge the database refused, charge_unrecorded for one it could not be
 * reached to record, ...), the processor's object, the milestone payment, the amount and a
 * detail for operations (no secret, no card data: the card-data guard refuses it). Recorded
 * once per kind and object: the same again returns the first record. `webhook_event_id` names
 * the event that found it, if one did. Returns the record.
 */
create function public.record_processor_inconsistency(
  kind text,
  processor_object_id text,
  milestone_payment_id uuid,
  amount_minor bigint,
  currency char(3),
  detail text,
  webhook_event_id text default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  insert into public.processor_inconsistencies as i (
    kind, processor_object_id, milestone_payment_id, webhook_event_id, amount_minor, currency,
    detail
  )
  values (
    record_processor_inconsistency.kind, record_processor_inconsistency.processor_object_id,
    record_processor_inconsistency.milestone_payment_id,
    record_processor_inconsistency.webhook_event_id,
    record_processor_inconsistency.amount_minor, upper(record_processor_inconsistency.currency),
    left(record_processor_inconsistency.detail, 2000)
  )
  on conflict on constraint processor_inconsistencies_kind_processor_object_id_key do nothing
  returning to_jsonb(i.*) into answer;
  if answer is null then
    select to_jsonb(i.*) into answer from public.processor_inconsistencies as i
    where i.kind = record_processor_inconsistency.kind
      and i.processor_object_id = record_processor_inconsistency.processor_object_id;
  end if;
  return answer;
end
$$;

revoke all on function public.record_processor_inconsistency(
  text, text, uuid, bigint, char, text, text
) from public, anon, authenticated, service_role;
grant execute on function public.record_processor_inconsistency(
  text, text, uuid, bigint, char, text, text
) to payment_service;

/**
 * Recover from a charge the database did not record (payment_service): fund the milestone
 * payment with it when the payment is still fundable (pending or failed, same amount and
 * currency, no other attempt in flight), else mark the charge to be refunded. The refund
 * itself is sent by the caller, with the returned idempotency key, and confirmed by the
 * processor's charge.refunded event, which resolves the inconsistency. Calling it again
 * returns the same decision. Only charges (`pi_…`) are recovered here (PT409 otherwise).
 * Returns {id, recovery: 'fund'|'refund', resolved, payment_intent_id, amount_minor,
 * currency, refund_idempotency_key}.
 */
create function public.recover_processor_inconsistency(inconsistency_id uuid)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  found_one public.processor_inconsistencies;
  payment public.milestone_payments;
  chosen text;
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
  chosen := found_one.recovery;
  if chosen is null and found_one.resolution is null then
    select * into payment from public.milestone_payments as mp
    where mp.id = found_one.milestone_payment_id
    for update;
    if payment.status in ('pending', 'failed')
      and (payment.amount_minor, payment.currency)
      = (found_one.amount_minor, found_one.currency)
      and not exists (
        select from public.funding_attempts as a
        where a.milestone_payment_id = payment.id and a.status = 'open'
          and a.processor_payment_intent_id is distinct from found_one.processor_object_id
      ) then
      perform private.fund_milestone_payment(
        payment.id, found_one.processor_object_id, payment.amount_minor, payment.currency,
        'processor_inconsistency:' || found_one.id || ':fund'
      );
      update public.funding_attempts as a
      set status = 'succeeded'
      where a.milestone_payment_id = payment.id
        and a.processor_payment_intent_id = found_one.processor_object_id
        and a.status <> 'succeeded';
      update public.processor_inconsistencies as i
      set recovery = 'fund',
        resolution = 'Recovered: milestone payment ' || payment.id
        || ' funded with PaymentIntent ' || found_one.processor_object_id
      where i.id = found_one.id
      returning * into found_one;
    else
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

revoke all on function public.recover_processor_inconsistency(uuid)
from public, anon, authenticated, service_role;
grant execute on function public.recover_processor_inconsistency(uuid) to payment_service;

/**
 * Close an inconsistency that no automatic recovery settles (an admin, with aal2 and a
 * written resolution of 10 to 2000 characters: PT422), e.g. a chargeback after the payee was
 * paid. Set once (PT409). Returns the record. Security definer: admins have no UPDATE on the
 * table, so this is their only way to resolve one.
 */
create function public.resolve_processor_inconsistency(inconsistency_id uuid, resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  answer jsonb;
begin
  -- The request's claims as PostgREST sets them (staff roles have no USAGE on schema auth).
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'resolving a processor inconsistency needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 2000) then
    raise exception 'resolving processor inconsistency % needs a written resolution of 10 to '
    '2000 characters', inconsistency_id
    using errcode = 'PT422';
  end if;
  update public.processor_inconsistencies as i
  set resolution = resolve_processor_inconsistency.resolution
  where i.id = resolve_processor_inconsistency.inconsistency_id
  returning to_jsonb(i.*) into answer;
  if answer is null then
    raise exception 'no processor inconsistency %', inconsistency_id using errcode = 'PT404';
  end if;
  return answer;
end
$$;

revoke all on function public.resolve_processor_inconsistency(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.resolve_processor_inconsistency(uuid, text) to admin;
