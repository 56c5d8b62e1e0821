-- Every refund payguard decides is an obligation towards the processor, recorded in the
-- transaction that decides it, sent by the refunds function and confirmed by charge.refunded.
--
-- A dispute that staff resolved as a refund or a split moved the escrow to processor clearing
-- in the ledger, and nothing asked Stripe to give the payer the money back; neither
-- reconciliation noticed. Likewise recover_processor_inconsistency answered `refund` with an
-- idempotency key, and nothing sent it. The class is "payguard decides that money goes back to
-- a card, and only the decision is recorded". Now each such decision records, in its own
-- transaction, a row of private.refund_obligations: the PaymentIntent, the amount (the whole
-- charge for a refund, the payer's share for a split, the charge for a recovery), and the
-- idempotency key (`milestone_payment:<id>:refund`, `processor_inconsistency:<id>:refund`,
-- then `…:<n>` for attempt n after a refusal Stripe answered). public.refunds_to_send() lists
-- the obligations due; the refunds function sends each (POST /v1/refunds with its key) and
-- records Stripe's refund (public.record_refund_sent) or its refusal
-- (public.record_refund_refusal); charge.refunded confirms it. `payguard reconcile` reports
-- every obligation not yet confirmed.
--
-- A chargeback that the card issuer decided for the payer is not one: the issuer took the
-- money back itself. Nor is a charge.refunded that Stripe reports for a funded payment: the
-- refund was made already.

insert into private.settings (key, value, description)
values (
  'refund_retry_seconds', '3600',
  'How long a refund that the processor refused waits before it is sent again under its next '
  || 'idempotency key.'
);

/**
 * A refund payguard owes the payer of a charge: what to refund (`payment_intent_id`,
 * `amount_minor`, `currency`), why (`reason`: a dispute resolved as a refund or a split, or the
 * recovery of a charge the database refused or did not record), for whom (the milestone
 * payment, the inconsistency), the attempt and its idempotency key, and where it stands:
 * `due` (to send), `sent` (Stripe made refund `processor_refund_id`), `confirmed`
 * (charge.refunded reported it), `canceled` (its inconsistency was settled otherwise before
 * anything was sent). Written only by the database's functions; read by `payguard reconcile`.
 */
create table private.refund_obligations (
  id uuid primary key default gen_random_uuid(),
  idempotency_key text not null unique check (idempotency_key ~ '^[a-z_]+:[0-9a-f-]{36}:refund$'),
  reason text not null check (reason in ('dispute_refund', 'dispute_split', 'recovery')),
  milestone_payment_id uuid references public.milestone_payments (id),
  processor_inconsistency_id uuid unique references public.processor_inconsistencies (id),
  payment_intent_id text not null check (payment_intent_id ~ '^pi_[A-Za-z0-9]+$'),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  attempt integer not null default 1 check (attempt >= 1),
  status text not null default 'due' check (status in ('due', 'sent', 'confirmed', 'canceled')),
  processor_refund_id text check (processor_refund_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  last_failure_code text check (last_failure_code ~ '^[a-z0-9_]{1,100}$'),
  last_failure_message text check (char_length(last_failure_message) <= 500),
  last_failed_at timestamptz,
  sent_at timestamptz,
  confirmed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (milestone_payment_id is not null or processor_inconsistency_id is not null),
  check ((status in ('sent', 'confirmed')) or processor_refund_id is null)
);

create unique index refund_obligations_one_per_payment_idx
on private.refund_obligations (milestone_payment_id)
where reason in ('dispute_refund', 'dispute_split');
create index refund_obligations_payment_intent_id_idx
on private.refund_obligations (payment_intent_id);
create index refund_obligations_due_idx
on private.refund_obligations (created_at) where status = 'due';

create trigger keep_row_timestamps
before insert or update on private.refund_obligations
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on private.refund_obligations
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('private.refund_obligations');

create trigger audit_trail
after insert or update or delete on private.refund_obligations
for each row execute function private.capture_audit_row('id');
select private.renew_audit_trail('private.refund_obligations');

revoke all on table private.refund_obligations from public;

/**
 * An obligation is a record: never deleted; what is owed never changes; it moves only
 * due → sent → confirmed (due → confirmed when charge.refunded comes first), or due →
 * canceled; its attempt only grows, and only while it is due; Stripe's refund id is set once.
 */
create function private.keep_refund_obligation() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    raise exception 'refund obligation % is a record: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.idempotency_key, new.reason, new.milestone_payment_id,
    new.processor_inconsistency_id, new.payment_intent_id, new.amount_minor, new.currency,
    new.created_at
  ) is distinct from (
    old.id, old.idempotency_key, old.reason, old.milestone_payment_id,
    old.processor_inconsistency_id, old.payment_intent_id, old.amount_minor, old.currency,
    old.created_at
  ) then
    raise exception 'refund obligation %: what is owed never changes', old.id
    using errcode = 'PT409';
  end if;
  if new.status is distinct from old.status and (old.status || '>' || new.status) not in (
    'due>sent', 'due>confirmed', 'sent>confirmed', 'due>canceled'
  ) then
    raise exception 'refund obligation % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if new.attempt <> old.attempt and (new.attempt <> old.attempt + 1 or old.status <> 'due') then
    raise exception 'refund obligation %: its attempt moves on by one, while it is due', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_refund_id is not null
    and new.processor_refund_id is distinct from old.processor_refund_id then
    raise exception 'refund obligation % was refunded by %: set once', old.id,
    old.processor_refund_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

revoke all on function private.keep_refund_obligation() from public;

create trigger keep_refund_obligation
before update or delete on private.refund_obligations
for each row execute function private.keep_refund_obligation();

/** The idempotency key of attempt `attempt` of the refund whose first key is `base`. */
create function private.refund_key(base text, attempt integer) returns text
language sql
immutable
set search_path = ''
as $$
  select base || case when attempt > 1 then ':' || attempt::text else '' end
$$;

revoke all on function private.refund_key(text, integer) from public;

/**
 * AFTER UPDATE trigger on milestone_payments, when a disputed payment is refunded or split:
 * payguard's decision (staff resolving the dispute, or settling the payment directly) owes the
 * payer a refund at the processor, of the whole charge or of the payer's share of the split.
 * A chargeback that the card issuer decided is not one: the issuer took the money back.
 * Security definer: the staff role that decided cannot write the obligation itself.
 */
create function private.record_refund_obligation_of_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  share bigint := 0;
begin
  if exists (
    select from public.disputes as d
    where d.milestone_payment_id = new.id and d.processor_dispute_id is not null
      and (d.status = 'open' or d.resolved_at = now())
  ) then
    return null;
  end if;
  if new.processor_payment_intent_id is null then
    raise exception 'milestone payment % is refunded with no PaymentIntent to refund', new.id
    using errcode = 'PT409';
  end if;
  if new.status = 'split' then
    select d.payee_share_minor into share from public.disputes as d
    where d.milestone_payment_id = new.id and d.status = 'resolved' and d.outcome = 'split'
    order by d.resolved_at desc
    limit 1;
    if share is null or share >= new.amount_minor then
      raise exception 'milestone payment % is split with no payee''s share below its amount',
      new.id
      using errcode = 'PT422';
    end if;
  end if;
  insert into private.refund_obligations (
    idempotency_key, reason, milestone_payment_id, payment_intent_id, amount_minor, currency
  )
  values (
    'milestone_payment:' || new.id || ':refund',
    case new.status when 'split' then 'dispute_split' else 'dispute_refund' end,
    new.id, new.processor_payment_intent_id, new.amount_minor - share, new.currency
  );
  return null;
end
$$;

revoke all on function private.record_refund_obligation_of_payment() from public;

create trigger record_refund_obligation
after update of status on public.milestone_payments
for each row
when (old.status = 'disputed' and new.status in ('refunded', 'split'))
execute function private.record_refund_obligation_of_payment();

/**
 * AFTER INSERT OR UPDATE trigger on processor_inconsistencies: a charge whose recovery is a
 * refund (recover_processor_inconsistency decided it, and the processor has not refunded it
 * already) is owed back to its payer; the obligation's key is the one the recovery answers,
 * `processor_inconsistency:<id>:refund`. An inconsistency settled otherwise before the refund
 * was sent (funded by its charge after all, or resolved by an admin) cancels it.
 */
create function private.record_refund_obligation_of_recovery() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.recovery = 'refund' and new.resolution is null
    and (tg_op = 'INSERT' or old.recovery is null)
    and new.processor_object_id ~ '^pi_[A-Za-z0-9]+$'
    and new.amount_minor is not null and new.currency is not null then
    insert into private.refund_obligations (
      idempotency_key, reason, milestone_payment_id, processor_inconsistency_id,
      payment_intent_id, amount_minor, currency
    )
    values (
      'processor_inconsistency:' || new.id || ':refund', 'recovery', new.milestone_payment_id,
      new.id, new.processor_object_id, new.amount_minor, new.currency
    )
    on conflict (processor_inconsistency_id) do nothing;
  elsif tg_op = 'UPDATE' and old.resolution is null and new.resolution is not null then
    update private.refund_obligations as o set status = 'canceled'
    where o.processor_inconsistency_id = new.id and o.status = 'due';
  end if;
  return null;
end
$$;

revoke all on function private.record_refund_obligation_of_recovery() from public;

create trigger record_refund_obligation
after insert or update of recovery, resolution on public.processor_inconsistencies
for each row execute function private.record_refund_obligation_of_recovery();

/**
 * The refunds to send now (payment_service): every obligation due, but one the processor
 * refused less than `refund_retry_seconds` ago (it is sent again, under its next key, after
 * that). Each with its PaymentIntent, amount, currency, the key of its current attempt and
 * what it refunds.
 */
create function public.refunds_to_send()
returns table (
  refund_obligation_id uuid,
  reason text,
  milestone_payment_id uuid,
  processor_inconsistency_id uuid,
  payment_intent_id text,
  amount_minor bigint,
  currency char(3),
  attempt integer,
  idempotency_key text,
  last_failure_code text
)
language sql
stable
security definer
set search_path = ''
as $$
  select o.id, o.reason, o.milestone_payment_id, o.processor_inconsistency_id,
    o.payment_intent_id, o.amount_minor, o.currency, o.attempt,
    private.refund_key(o.idempotency_key, o.attempt), o.last_failure_code
  from private.refund_obligations as o
  where o.status = 'due'
    and (o.last_failed_at is null or o.last_failed_at <= now() - make_interval(
      secs => (private.setting('refund_retry_seconds') #>> '{}')::double precision
    ))
  order by o.created_at, o.id
$$;

revoke all on function public.refunds_to_send() from public, anon, authenticated, service_role;
grant execute on function public.refunds_to_send() to payment_service;

/**
 * Record the refund Stripe made for obligation `refund_obligation_id` (payment_service): it is
 * sent, awaiting charge.refunded. The same refund again changes nothing (nor after
 * charge.refunded confirmed it); another refund id is PT409, an unknown obligation PT404, a
 * canceled one PT409. Returns the obligation.
 */
create function public.record_refund_sent(refund_obligation_id uuid, refund_id text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  obligation private.refund_obligations;
begin
  if coalesce(refund_id, '') !~ '^re_[A-Za-z0-9]+$' then
    raise exception 'a refund id is re_…, not %', coalesce(refund_id, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into obligation from private.refund_obligations as o
  where o.id = record_refund_sent.refund_obligation_id
  for update;
  if not found then
    raise exception 'no refund obligation %', refund_obligation_id using errcode = 'PT404';
  end if;
  if obligation.processor_refund_id = refund_id then
    return to_jsonb(obligation);
  end if;
  if obligation.processor_refund_id is not null then
    raise exception 'refund obligation % was refunded by %, not by %', obligation.id,
    obligation.processor_refund_id, refund_id
    using errcode = 'PT409';
  end if;
  if obligation.status = 'canceled' then
    raise exception 'refund obligation % was canceled: its refund % is for operations',
    obligation.id, refund_id
    using errcode = 'PT409';
  end if;
  update private.refund_obligations as o
  set status = case when o.status = 'due' then 'sent' else o.status end,
    processor_refund_id = refund_id, sent_at = now()
  where o.id = obligation.id
  returning * into obligation;
  return to_jsonb(obligation);
end
$$;

revoke all on function public.record_refund_sent(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_refund_sent(uuid, text) to payment_service;

/**
 * Record a refusal that Stripe answered for the current key of obligation
 * `refund_obligation_id` (payment_service): Stripe keeps that answer for the key, so the next
 * attempt goes under the next key, after `refund_retry_seconds`. Another key than the current
 * one is PT409 (the same refusal recorded again changes nothing), an obligation no longer due
 * PT409. Returns {refund_obligation_id, attempt, failure_code, next_idempotency_key}.
 */
create function public.record_refund_refusal(
  refund_obligation_id uuid,
  idempotency_key text,
  code text,
  message text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  obligation private.refund_obligations;
begin
  select * into obligation from private.refund_obligations as o
  where o.id = record_refund_refusal.refund_obligation_id
  for update;
  if not found then
    raise exception 'no refund obligation %', refund_obligation_id using errcode = 'PT404';
  end if;
  if obligation.attempt > 1
    and idempotency_key = private.refund_key(obligation.idempotency_key, obligation.attempt - 1)
    and obligation.last_failure_code is not distinct from lower(code) then
    return jsonb_build_object(
      'refund_obligation_id', obligation.id, 'attempt', obligation.attempt - 1,
      'failure_code', obligation.last_failure_code,
      'next_idempotency_key', private.refund_key(obligation.idempotency_key, obligation.attempt)
    );
  end if;
  if obligation.status <> 'due' then
    raise exception 'refund obligation % is %: no refusal is recorded for it', obligation.id,
    obligation.status
    using errcode = 'PT409';
  end if;
  if idempotency_key is distinct from private.refund_key(
    obligation.idempotency_key, obligation.attempt
  ) then
    raise exception 'refund obligation % is at key %, not %', obligation.id,
    private.refund_key(obligation.idempotency_key, obligation.attempt), idempotency_key
    using errcode = 'PT409';
  end if;
  update private.refund_obligations as o
  set attempt = o.attempt + 1,
    last_failure_code = left(lower(coalesce(nullif(code, ''), 'processor_error')), 100),
    last_failure_message = left(message, 500),
    last_failed_at = now()
  where o.id = obligation.id
  returning * into obligation;
  return jsonb_build_object(
    'refund_obligation_id', obligation.id, 'attempt', obligation.attempt - 1,
    'failure_code', obligation.last_failure_code,
    'next_idempotency_key', private.refund_key(obligation.idempotency_key, obligation.attempt)
  );
end
$$;

revoke all on function public.record_refund_refusal(uuid, text, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_refund_refusal(uuid, text, text, text)
to payment_service;

/**
 * The charges whose recovery is still to decide (payment_service): every open
 * charge_refused / charge_unrecorded inconsistency about a PaymentIntent of a milestone
 * payment that has no recovery yet. The refunds function runs recover_processor_inconsistency
 * on each, as `payguard stripe recover` does.
 */
create function public.inconsistencies_to_recover()
returns table (inconsistency_id uuid, kind text, payment_intent_id text)
language sql
stable
security definer
set search_path = ''
as $$
  select i.id, i.kind, i.processor_object_id
  from public.processor_inconsistencies as i
  where i.resolution is null and i.recovery is null
    and i.kind in ('charge_refused', 'charge_unrecorded')
    and i.processor_object_id ~ '^pi_' and i.milestone_payment_id is not null
  order by i.created_at, i.id
$$;

revoke all on function public.inconsistencies_to_recover()
from public, anon, authenticated, service_role;
grant execute on function public.inconsistencies_to_recover() to payment_service;

/**
 * charge.refunded's part (payment_service, from private.apply_charge_refunded): the refund
 * `refund_id` of `amount` `refund_currency` on PaymentIntent `payment_intent_id` confirms the
 * obligation of milestone payment `payment` (a dispute's refund or split), or, with `payment`
 * null, the obligation of a recovered charge, unless it was canceled. Returns the obligation
 * confirmed, or null when none is owed. An amount other than the obligation's is PT422.
 */
create function private.confirm_refund_obligation(
  payment uuid,
  payment_intent_id text,
  amount bigint,
  refund_currency char(3),
  refund_id text
) returns private.refund_obligations
language plpgsql
security definer
set search_path = ''
as $$
declare
  obligation private.refund_obligations;
begin
  select * into obligation from private.refund_obligations as o
  where o.payment_intent_id = confirm_refund_obligation.payment_intent_id
    and o.status <> 'canceled'
    and case when payment is null then o.reason = 'recovery'
      else o.reason <> 'recovery' and o.milestone_payment_id = payment end
  order by o.created_at
  limit 1
  for update;
  if not found then
    return null;
  end if;
  if (obligation.amount_minor, obligation.currency) is distinct from (amount, refund_currency)
    then
    raise exception 'PaymentIntent % was refunded % %, but payguard owes its payer % %',
    payment_intent_id, amount, refund_currency, obligation.amount_minor, obligation.currency
    using errcode = 'PT422',
    hint = 'operations compare the refunds at the processor with refund obligation '
    || obligation.id;
  end if;
  if obligation.status <> 'confirmed' then
    update private.refund_obligations as o
    set status = 'confirmed', confirmed_at = now(),
      processor_refund_id = coalesce(
        o.processor_refund_id,
        case when refund_id ~ '^re_[A-Za-z0-9]+$' then refund_id end
      )
    where o.id = obligation.id
    returning * into obligation;
  end if;
  return obligation;
end
$$;

revoke all on function private.confirm_refund_obligation(uuid, text, bigint, char, text)
from public;
grant execute on function private.confirm_refund_obligation(uuid, text, bigint, char, text)
to payment_service;
