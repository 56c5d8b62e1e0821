-- The border with Stripe
--
-- What the Edge Functions record and apply: Stripe's customers and the funding of milestone
-- payments, the inconsistencies operations settle, Stripe's webhook events (each recorded once
-- and applied by one handler per type), the refunds payguard owes, contractors' connected
-- accounts, and the transfers, payouts, retries and reversals of withdrawals.
--
-- Sections, in this order: customers and saved cards; funding milestone payments; processor
-- inconsistencies; webhook events; refunds owed; connected accounts; withdrawals at the
-- processor; privileges.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: supabase/functions/, docs/stripe-border-database.md, tests/sql/stripe_border/

set local check_function_bodies = off;

-- Section: customers and saved cards
--
-- Each user's customer at the processor, recorded once. The payment-methods Edge Function
-- creates the customer on a user's first saved card and records it here, sealed; every
-- payment method of that user must then name that customer (by its lookup), so no `cus_` of
-- anyone's choosing is kept.

/**
 * A user's customer at the processor (Stripe's `cus_…`), set once: it is never updated, and
 * payment_service records it on the user's behalf. The user reads their own.
 */
create table public.processor_customers (
  user_id uuid primary key references public.users (id) on delete cascade,
  processor text not null default 'stripe' check (processor = 'stripe'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The customer sealed, and its lookup (payment_methods.sql, processor tokens): only
  -- payment_service reads the sealed one. A customer recorded by a trusted role's direct write
  -- of a payment method is known by its lookup alone until the function seals it.
  processor_customer_id_sealed private.sealed_token,
  processor_customer_id_lookup private.token_lookup not null,
  constraint processor_customers_processor_customer_id_lookup_key
  unique (processor_customer_id_lookup)
);

/** A recorded customer never changes: a user keeps the customer their cards are saved under. */
create or replace function private.keep_processor_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Only its sealed value changes: sealed once known, re-sealed under a newer key; and its
  -- lookup moves to a new index key by `payguard keys reindex` alone.
  if (to_jsonb(new) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
    is distinct from
    (to_jsonb(old) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
    or new.processor_customer_id_lookup is distinct from old.processor_customer_id_lookup
    and not private.token_reindexing(
      tg_relid, old.processor_customer_id_lookup, new.processor_customer_id_lookup
    )
  then
    raise exception 'the processor customer of user % is recorded once and never changes',
    old.user_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

-- A recorded customer keeps its timestamps, holds no card data and never changes.

create trigger keep_processor_customer
before update on public.processor_customers
for each row execute function private.keep_processor_customer();

-- Its lookups are set once (payment_methods.sql, processor tokens).
create trigger keep_token_lookups
before update on public.processor_customers
for each row execute function private.keep_token_lookups(
  'processor_customer_id_lookup'
);

create trigger keep_row_timestamps
before insert or update on public.processor_customers
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.processor_customers
for each row
execute function private.refuse_card_data(
  'user_id', 'created_at', 'updated_at'
);

/**
 * A payment method names its owner's recorded customer, by lookup. The first payment method of
 * a user with no recorded customer records it, by its lookup (the payment-methods function
 * records and seals the customer first; a trusted role's direct write leaves it to be sealed);
 * a customer recorded for another user is refused. The error names rows, never a token.
 */
create or replace function private.check_payment_method_customer() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  recorded text;
  holder uuid;
begin
  select c.processor_customer_id_lookup into recorded
  from public.processor_customers as c where c.user_id = new.user_id;
  if recorded is null then
    select c.user_id into holder
    from public.processor_customers as c
    where c.processor_customer_id_lookup = new.processor_customer_id_lookup;
    if holder is not null then
      raise exception 'payment method %: its customer is another user''s', new.id
      using errcode = 'PT409';
    end if;
    insert into public.processor_customers (user_id, processor, processor_customer_id_lookup)
    values (new.user_id, new.processor, new.processor_customer_id_lookup);
  elsif recorded <> new.processor_customer_id_lookup then
    raise exception 'payment method %: its customer is not the recorded customer of user %',
    new.id, new.user_id
    using errcode = 'PT409',
    hint = 'a payment method is saved under its owner''s customer at the processor';
  end if;
  return new;
end
$$;

-- A payment method names its owner's recorded customer (or records it, on the first card).
create trigger tie_payment_method_to_customer
before insert or update of user_id, processor_customer_id_lookup on public.payment_methods
for each row execute function private.check_payment_method_customer();

-- Saving a payment method counts towards the caller's limit before Stripe is asked anything.
--
-- The payment-methods function's first database call is public.begin_saving_payment_method, in
-- a transaction of its own that commits before Stripe is called. Each request is a call to
-- Stripe, whose rate limit is the whole account's, so every request counts towards
-- payment_methods.save (Medium, as payment_methods.insert, which counts only users' inserts
-- while payment_service inserts the row), a retry and a request that Stripe then refuses too:
-- one user cannot slow every payer down. Over the limit the answer is 429 with nothing asked
-- of Stripe. As in every border RPC, a refusal (no aal2, over the limit) is recorded, counted
-- and answered through response.status.

/**
 * Allow the signed-in caller to save a card: the call counted against payment_methods.save
 * first, then aal2 required (as the payment_methods insert requires it). Says whether
 * the caller has a recorded Stripe customer (`customer_recorded`), never which. Raises its
 * refusals; public.begin_saving_payment_method records and answers them.
 */
create or replace function private.begin_saving_payment_method() returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := (select auth.uid());
begin
  if caller is null or current_setting('role', true) is distinct from 'authenticated' then
    raise exception 'a payment method is saved by its owner, signed in'
    using errcode = '42501';
  end if;
  perform private.enforce_rate_limit('payment_methods.save');
  if (select auth.jwt() ->> 'aal') is distinct from 'aal2' then
    raise exception 'saving a payment method needs multi-factor authentication (aal2)'
    using errcode = 'PT403', hint = 'verify a second factor, then retry';
  end if;
  -- Whether a customer is recorded, not which: a token is payment_service's alone.
  return jsonb_build_object(
    'customer_recorded',
    exists (select from public.processor_customers as c where c.user_id = caller)
  );
end
$$;

/** private.begin_saving_payment_method, with a refusal recorded, counted and answered. */
create or replace function public.begin_saving_payment_method() returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.begin_saving_payment_method();
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'begin_saving_payment_method', 'payment_methods', null, '{}'::jsonb,
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- Counted by public.begin_saving_payment_method.
insert into private.rate_limit_rules (operation, rate_level, rpc)
values ('payment_methods.save', 'medium', 'begin_saving_payment_method');

-- Section: funding milestone payments
--
-- Funding a milestone payment through the processor, attempt by attempt. The
-- milestone-payments Edge Function opens an attempt as the payer (begin_funding_attempt, under
-- the payer's own claims, so RLS, MFA and limits apply as to any app client), charges exactly
-- the attempt's amount and currency with the attempt's idempotency key, and records the
-- processor's answer as payment_service. A retried request finds the attempt still open and
-- gets the same key back, so the processor never charges twice; a new attempt (and key) is
-- opened only after the previous one failed. The payment is funded only by the processor's
-- payment_intent.succeeded event (apply_stripe_event), never by the function's own reading of
-- the answer.

/**
 * One attempt to charge the payer for a milestone payment: the payment method charged, the
 * idempotency key sent to the processor, the PaymentIntent it created (set once), and how it
 * ended. At most one attempt per payment is open.
 */
create table public.funding_attempts (
  id uuid primary key default gen_random_uuid(),
  milestone_payment_id uuid not null references public.milestone_payments (id),
  attempt integer not null check (attempt >= 1),
  payment_method_id uuid references public.payment_methods (id) on delete set null,
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  idempotency_key text not null unique,
  processor_payment_intent_id text unique
  check (processor_payment_intent_id ~ '^pi_[A-Za-z0-9]+$'),
  status text not null default 'open' check (status in ('open', 'failed', 'succeeded')),
  failure_code text check (char_length(failure_code) between 1 and 100),
  failure_message text check (char_length(failure_message) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The lookups of the ids charged (payment_methods.sql, processor tokens); the payment method
  -- and its owner's customer hold them sealed.
  processor_payment_method_id_lookup private.token_lookup not null,
  processor_customer_id_lookup private.token_lookup not null,
  unique (milestone_payment_id, attempt)
);

create index funding_attempts_payment_method_id_idx
on public.funding_attempts (payment_method_id);

-- At most one open attempt per payment: every open attempt of a payment has the key
-- (payment, null), so a second one conflicts; an ended attempt is keyed by its own id. A full
-- index on an expression rather than a partial one, so that the planner never mistakes it for
-- a one-row scan when a query's conditions imply its predicate.
create unique index funding_attempts_one_open_key
on public.funding_attempts (
  milestone_payment_id, (case when status <> 'open' then id end)
) nulls not distinct;

/**
 * An attempt's facts are set once: what it charges never changes, its PaymentIntent id is
 * recorded once, and it ends once (open to failed or succeeded; a failed one may still
 * succeed), with a failure code only when it fails. Attempts are never deleted, but by the
 * retention purge seven years after their last change (private.purging_closed_records,
 * transactions.sql).
 */
create or replace function private.check_funding_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The lookups it charged, as they stand after the update: `payguard keys reindex` alone
  -- moves them to a new index key (the same tokens).
  method_lookup text := new.processor_payment_method_id_lookup;
  customer_lookup text := new.processor_customer_id_lookup;
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
    raise exception 'funding attempt % is a record of a charge: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if method_lookup is distinct from old.processor_payment_method_id_lookup
    and private.token_reindexing(tg_relid, old.processor_payment_method_id_lookup, method_lookup)
    then
    method_lookup := old.processor_payment_method_id_lookup;
  end if;
  if customer_lookup is distinct from old.processor_customer_id_lookup
    and private.token_reindexing(tg_relid, old.processor_customer_id_lookup, customer_lookup)
    then
    customer_lookup := old.processor_customer_id_lookup;
  end if;
  if (
    new.id, new.milestone_payment_id, new.attempt, method_lookup, customer_lookup,
    new.amount_minor, new.currency, new.idempotency_key
  ) is distinct from (
    old.id, old.milestone_payment_id, old.attempt, old.processor_payment_method_id_lookup,
    old.processor_customer_id_lookup, old.amount_minor, old.currency, old.idempotency_key
  ) or new.payment_method_id is distinct from old.payment_method_id
  and new.payment_method_id is not null then
    raise exception 'funding attempt % of milestone payment %: what it charges never changes',
    old.attempt, old.milestone_payment_id
    using errcode = 'PT409';
  end if;
  if new.processor_payment_intent_id is distinct from old.processor_payment_intent_id
    and old.processor_payment_intent_id is not null then
    raise exception 'funding attempt % of milestone payment % is PaymentIntent %, not %',
    old.attempt, old.milestone_payment_id, old.processor_payment_intent_id,
    new.processor_payment_intent_id
    using errcode = 'PT409';
  end if;
  -- A PaymentIntent that failed may still succeed when it is confirmed again (3-D Secure).
  if new.status is distinct from old.status and old.status <> 'open'
    and (old.status, new.status) is distinct from ('failed', 'succeeded') then
    raise exception 'funding attempt % of milestone payment % has %: it ends once',
    old.attempt, old.milestone_payment_id, old.status
    using errcode = 'PT409';
  end if;
  if (new.failure_code, new.failure_message)
    is distinct from (old.failure_code, old.failure_message)
    and (old.status <> 'open' or new.status <> 'failed') then
    raise exception 'funding attempt % of milestone payment %: its failure is recorded once, '
    'when it fails', old.attempt, old.milestone_payment_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

-- An attempt keeps its timestamps and holds no card data; its facts are set once.

create trigger check_funding_attempt
before update or delete on public.funding_attempts
for each row execute function private.check_funding_attempt();

-- Its lookups are set once (payment_methods.sql, processor tokens).
create trigger keep_token_lookups
before update on public.funding_attempts
for each row execute function private.keep_token_lookups(
  'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
);

create trigger keep_row_timestamps
before insert or update on public.funding_attempts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.funding_attempts
for each row
execute function private.refuse_card_data(
  'id', 'milestone_payment_id', 'payment_method_id', 'created_at', 'updated_at'
);

-- An open attempt never blocks its payment for good.
--
-- A request with another payment method than the open attempt's (or after that attempt's own
-- was deleted) does not wait for the attempt to fail:
--   * an attempt with no PaymentIntent recorded and opened more than a minute ago (the
--     milestone-payments function gives up on Stripe after 20 seconds, so no request creating
--     its intent is still in flight) is abandoned (failed, 'abandoned'), and the next attempt
--     opens under the next key, which is the only one the function charges;
--   * an attempt whose PaymentIntent is recorded (which may wait for 3-D Secure the payer never
--     completes) is answered unchanged, with `cancel_to_replace` true. The function cancels
--     that intent at Stripe first, and only once Stripe answers that it is canceled records
--     the attempt as failed (record_funding_failure, 'canceled') and asks again, which opens
--     the next attempt. If Stripe will not cancel it (it succeeded, or is processing), nothing
--     else is charged.
-- So there are never two live PaymentIntents for one payment, and a new attempt opens only
-- after the previous one failed. A success of an old intent that reaches the database all the
-- same names an attempt that is not the payment's current one (or finds the payment funded):
-- it is refused and recorded as a charge_refused inconsistency, whose recovery is a refund.

/**
 * Open (or find) the attempt that charges milestone payment `milestone_payment_id` with the
 * caller's payment method `payment_method_id`, every call counted against the caller's
 * milestone_payments.fund limit first. An open attempt of another payment method (or of a
 * deleted one) that recorded no PaymentIntent and was opened more than a minute ago is
 * abandoned, and the next attempt opened; one that recorded a PaymentIntent is answered with
 * `cancel_to_replace` true: its intent must be canceled at the processor (and the attempt
 * recorded as failed) before another payment method is charged. The attempt names its payment
 * method by its row (`payment_method`), never by its processor ids. Raises its refusals;
 * public.begin_funding_attempt records and answers them.
 */
create or replace function private.begin_funding_attempt(
  milestone_payment_id uuid, payment_method_id uuid
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := (select auth.uid());
  payment public.milestone_payments;
  method public.payment_methods;
  current_attempt public.funding_attempts;
  replace_first boolean := false;
begin
  if caller is null or current_setting('role', true) is distinct from 'authenticated' then
    raise exception 'a funding attempt is opened by the payer, signed in'
    using errcode = '42501';
  end if;
  perform private.enforce_rate_limit('milestone_payments.fund');
  select * into payment from public.milestone_payments as mp
  where mp.id = begin_funding_attempt.milestone_payment_id and mp.payer_id = caller
  for update;
  if not found then
    raise exception 'no milestone payment % that you may fund', milestone_payment_id
    using errcode = 'PT404';
  end if;
  if payment.status not in ('pending', 'failed') then
    raise exception 'milestone payment % is %: only a pending or failed payment is funded',
    payment.id, payment.status
    using errcode = 'PT409';
  end if;
  if payment.amount_minor >= private.mfa_threshold(payment.currency)
    and (select auth.jwt() ->> 'aal') is distinct from 'aal2' then
    raise exception 'funding milestone payment % needs MFA (aal2)', payment.id
    using errcode = 'PT403', hint = 'verify a second factor, then retry';
  end if;
  select * into method from public.payment_methods as m
  where m.id = begin_funding_attempt.payment_method_id and m.user_id = caller;
  if not found then
    raise exception 'no payment method % of yours', payment_method_id
    using errcode = 'PT404';
  end if;
  select * into current_attempt from public.funding_attempts as a
  where a.milestone_payment_id = payment.id
  order by a.attempt desc
  limit 1;
  if found and current_attempt.status = 'open'
    and current_attempt.payment_method_id is distinct from method.id
    and current_attempt.processor_payment_intent_id is null
    and current_attempt.created_at < now() - interval '1 minute' then
    -- Abandoned: no charge was recorded for it, and none can be in flight any more.
    update public.funding_attempts as a
    set status = 'failed', failure_code = 'abandoned',
      failure_message = case
        when current_attempt.payment_method_id is null
          then 'Abandoned: its payment method was deleted before any charge was recorded'
        else 'Abandoned: the payer asked again with another payment method before any '
          || 'charge was recorded'
      end
    where a.id = current_attempt.id
    returning * into current_attempt;
  end if;
  if found and current_attempt.status = 'open' then
    if current_attempt.payment_method_id is distinct from method.id then
      if current_attempt.processor_payment_intent_id is not null then
        -- Its charge is at the processor: the function cancels it there before charging
        -- another payment method (the attempt stays open until then).
        replace_first := true;
      else
        raise exception 'milestone payment % is being charged to another payment method (attempt %)',
        payment.id, current_attempt.attempt
        using errcode = 'PT409',
        hint = 'retry with the same payment method, or with another one in a minute';
      end if;
    end if;
  elsif found and current_attempt.status = 'succeeded' then
    raise exception 'milestone payment % was already charged (attempt %)',
    payment.id, current_attempt.attempt
    using errcode = 'PT409';
  else
    insert into public.funding_attempts (
      milestone_payment_id, attempt, payment_method_id, amount_minor, currency, idempotency_key,
      processor_payment_method_id_lookup, processor_customer_id_lookup
    )
    values (
      payment.id, coalesce(current_attempt.attempt, 0) + 1, method.id, payment.amount_minor,
      payment.currency,
      'milestone_payment:' || payment.id || ':attempt:' || (coalesce(current_attempt.attempt, 0) + 1),
      method.processor_payment_method_id_lookup, method.processor_customer_id_lookup
    )
    returning * into current_attempt;
  end if;
  return jsonb_build_object(
    'milestone_payment_id', current_attempt.milestone_payment_id,
    'attempt', current_attempt.attempt,
    'idempotency_key', current_attempt.idempotency_key,
    'amount_minor', current_attempt.amount_minor,
    'currency', current_attempt.currency,
    -- The payment method charged, by its row: the function reads its token as
    -- payment_service (a token is never handed to the payer).
    'payment_method', current_attempt.payment_method_id,
    'payment_intent_id', current_attempt.processor_payment_intent_id,
    'status', current_attempt.status,
    'cancel_to_replace', replace_first
  );
end
$$;

/** private.begin_funding_attempt, with a refusal recorded, counted and answered. */
create or replace function public.begin_funding_attempt(
  milestone_payment_id uuid, payment_method_id uuid
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.begin_funding_attempt(milestone_payment_id, payment_method_id);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'begin_funding_attempt', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object(
      'milestone_payment_id', milestone_payment_id, 'payment_method_id', payment_method_id
    ),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- Counted by begin_funding_attempt, every call, before it reads anything; the
-- milestone-payments function commits that call before Stripe is called.
insert into private.rate_limit_rules (operation, rate_level, rpc)
values ('milestone_payments.fund', 'medium', 'begin_funding_attempt');

/**
 * Record the PaymentIntent that the processor created for attempt `attempt` of milestone
 * payment `milestone_payment_id` (payment_service): set once, the same value again changes
 * nothing, another one is refused (PT409); unknown attempt PT404. Returns the attempt.
 */
create or replace function public.record_payment_intent(
  milestone_payment_id uuid, attempt integer, payment_intent_id text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  update public.funding_attempts as a
  set processor_payment_intent_id = record_payment_intent.payment_intent_id
  where a.milestone_payment_id = record_payment_intent.milestone_payment_id
    and a.attempt = record_payment_intent.attempt
  returning to_jsonb(a.*) into answer;
  if answer is null then
    raise exception 'no funding attempt % of milestone payment %', attempt, milestone_payment_id
    using errcode = 'PT404';
  end if;
  return answer;
end
$$;

/**
 * Record that the processor declined or canceled attempt `attempt` of milestone payment
 * `milestone_payment_id` (payment_service), with its failure code and message: the attempt
 * fails and a pending payment becomes failed (its payer is told, and may try again). The
 * webhook's payment_intent.payment_failed may report the same failure: whichever comes
 * second changes nothing. A succeeded attempt is not failed (PT409). Returns the attempt.
 */
create or replace function public.record_funding_failure(
  milestone_payment_id uuid, attempt integer, code text, message text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  failed public.funding_attempts;
begin
  -- The payment first, then its attempts, in the order apply_stripe_event takes them.
  perform from public.milestone_payments as mp
  where mp.id = record_funding_failure.milestone_payment_id
  for update;
  select * into failed from public.funding_attempts as a
  where a.milestone_payment_id = record_funding_failure.milestone_payment_id
    and a.attempt = record_funding_failure.attempt
  for update;
  if not found then
    raise exception 'no funding attempt % of milestone payment %', attempt, milestone_payment_id
    using errcode = 'PT404';
  end if;
  if failed.status = 'succeeded' then
    raise exception 'funding attempt % of milestone payment % succeeded: it does not fail',
    attempt, milestone_payment_id
    using errcode = 'PT409';
  end if;
  if failed.status = 'open' then
    update public.funding_attempts as a
    set status = 'failed',
      failure_code = coalesce(left(nullif(code, ''), 100), 'unknown'),
      failure_message = private.recordable_message(message, 500)
    where a.id = failed.id
    returning * into failed;
  end if;
  -- Only the latest attempt's failure fails the payment: an earlier one's is history.
  update public.milestone_payments as mp set status = 'failed'
  where mp.id = record_funding_failure.milestone_payment_id and mp.status = 'pending'
    and not exists (
      select from public.funding_attempts as later
      where later.milestone_payment_id = mp.id and later.attempt > failed.attempt
    );
  return to_jsonb(failed);
end
$$;

-- Section: processor inconsistencies
--
-- Where the processor and the database disagree about money, for operations to see and settle:
-- above all a charge the processor made that the database refused (or could not be reached to
-- record). Each is recorded once per kind and processor object, never deleted; its recovery
-- ('fund' or 'refund') and its resolution are each set once. `payguard reconcile` reports the
-- unresolved ones. A refused money event records its own (apply_stripe_event); the Edge
-- Functions record the others.

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

/**
 * An inconsistency is a record: never deleted (but by the retention purge seven years after
 * its last change: private.purging_closed_records, transactions.sql), its facts never change,
 * its recovery and its resolution are each set once. One exception: a charge marked to be
 * refunded that funds its payment before it is refunded is resolved as funded, its recovery
 * turning from 'refund' to 'fund' with that resolution.
 */
create or replace function private.keep_processor_inconsistency() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
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

/** BEFORE INSERT trigger: the database sets resolved_at, now if recorded resolved. */
create or replace function private.new_processor_inconsistency() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.resolved_at := case when new.resolution is not null then now() end;
  return new;
end
$$;

-- An inconsistency keeps its timestamps, holds no card data, and is a record (see above).

create trigger keep_processor_inconsistency
before update or delete on public.processor_inconsistencies
for each row execute function private.keep_processor_inconsistency();

create trigger keep_row_timestamps
before insert or update on public.processor_inconsistencies
for each row execute function private.keep_row_timestamps();

create trigger new_processor_inconsistency
before insert on public.processor_inconsistencies
for each row execute function private.new_processor_inconsistency();

create trigger refuse_card_data
before insert or update
on public.processor_inconsistencies
for each row
execute function private.refuse_card_data(
  'id', 'milestone_payment_id', 'resolved_at', 'created_at', 'updated_at'
);

/**
 * A message from the processor or the database as a record keeps it: its first `max_chars`
 * characters, or "[removed: it held card data]" when the card-data guard would refuse them (an
 * error's text may join digits to an id, which then reads as a card number). The border's
 * records of refusals and inconsistencies keep their messages through it, so that a record is
 * never refused, and lost, for its message's wording. Security definer: the guard's functions
 * are the owner's.
 */
create or replace function private.recordable_message(message text, max_chars integer)
returns text
language sql
immutable
security definer
set search_path = ''
as $$
  select case
    when private.holds_card_number(left(private.without_processor_ids(message), max_chars))
      then '[removed: it held card data]'
    else left(private.without_processor_ids(message), max_chars)
  end
$$;

grant execute on function private.recordable_message(text, integer) to payment_service;

/**
 * Record an inconsistency found at the border (payment_service): `kind` (a lower-case word,
 * charge_refused for a charge the database refused, charge_unrecorded for one it could not be
 * reached to record, ...), the processor's object, the milestone payment, the amount and a
 * detail for operations (no secret, no card data). Recorded once per kind and object: the same
 * again returns the first record. `webhook_event_id` names the event that found it, if one did.
 * Returns the record. Its detail is kept through private.recordable_message: a detail the
 * card-data guard would refuse is recorded as "[removed: it held card data]", and the report
 * itself is never lost to its wording.
 */
create or replace function public.record_processor_inconsistency(
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
    private.recordable_message(record_processor_inconsistency.detail, 2000)
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

/**
 * The charges whose recovery is still to decide (payment_service): every open
 * charge_refused / charge_unrecorded inconsistency about a PaymentIntent of a milestone
 * payment that has no recovery yet. The refunds function runs recover_processor_inconsistency
 * on each, as `payguard stripe recover` does.
 */
create or replace function public.inconsistencies_to_recover()
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

/**
 * Recover the charge of open inconsistency `inconsistency_id` (payment_service: the refunds
 * function, `payguard stripe recover`), a charge_refused or charge_unrecorded PaymentIntent of
 * a milestone payment (PT404, PT409 otherwise). In this order: a payment that this intent
 * funded already resolves it as funded; a charge.refunded of the intent that was refused (it
 * came before the success, and found nothing to refund) resolves it as refunded, naming that
 * event, and nothing is funded or refunded again: the payer has the money back; a payment
 * still fundable with the charge's amount and currency is funded with it (the open attempt
 * that recorded no intent is the charge's own, and records it), which resolves it; otherwise
 * its recovery is 'refund', which records the refund owed. A charge the processor refunded is
 * never used to fund its payment. Returns the inconsistency, with the refund's idempotency key.
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

/**
 * Close an inconsistency that no automatic recovery settles (an admin, with aal2 and a
 * written resolution of 10 to 2000 characters: PT422), e.g. a chargeback after the payee was
 * paid. Set once (PT409). A transfer_unreversed inconsistency is refused (PT409): it is settled
 * by recording the transfer's reversal, or by leave_transfer_with_payee, which moves the money
 * with the words. Returns the record. Security definer: admins have no UPDATE on the table.
 */
create or replace function private.resolve_processor_inconsistency(
  inconsistency_id uuid, resolution text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  answer jsonb;
  found_kind text;
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
  select i.kind into found_kind from public.processor_inconsistencies as i
  where i.id = resolve_processor_inconsistency.inconsistency_id;
  if found_kind = 'transfer_unreversed' then
    raise exception 'processor inconsistency % is an unreversed transfer: record its reversal, '
    'or leave it with the payee (leave_transfer_with_payee)', inconsistency_id
    using errcode = 'PT409';
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

/** private.resolve_processor_inconsistency, with a refusal recorded and answered. */
create or replace function public.resolve_processor_inconsistency(
  inconsistency_id uuid, resolution text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.resolve_processor_inconsistency(inconsistency_id, resolution);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'resolve_processor_inconsistency', 'processor_inconsistencies', inconsistency_id::text,
    jsonb_build_object('inconsistency_id', inconsistency_id, 'resolution', resolution),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- A charge that funded its payment is never refunded as if it had not.
--
-- The charge of a charge_unrecorded or charge_refused inconsistency may fund its payment by
-- another path while the inconsistency is open (Stripe's payment_intent.succeeded records the
-- intent on the open attempt and funds the payment). The inconsistency must not outlive the
-- fact that settles it, or its recovery would find the payment no longer fundable and refund
-- money out of a funded escrow. So:
--   * funding a payment with a PaymentIntent (whichever path: the webhook, a recovery, a
--     direct call) resolves, in that transaction, every open charge_unrecorded or
--     charge_refused inconsistency that names that intent: its recovery is 'fund';
--   * such an inconsistency recorded after its payment was already funded by that intent
--     (the webhook won the race against the function's report) is recorded resolved;
--   * an inconsistency marked to be refunded whose payment the charge funds before the
--     refund is made is resolved as funded: its recovery becomes 'fund', the only change
--     of a recovery once set, and only together with its resolution.

/** The kinds of inconsistency that a charge's funding of its payment settles. */
create or replace function private.settled_by_funding(kind text) returns boolean
language sql
immutable
set search_path = ''
as $$
  select kind in ('charge_unrecorded', 'charge_refused')
$$;

/**
 * AFTER UPDATE trigger on milestone_payments: a payment funded with a PaymentIntent resolves
 * the open inconsistencies about that charge (recovery 'fund'). Security definer: a funding
 * by any path settles them, whoever funds.
 */
create or replace function private.resolve_inconsistencies_of_funding() returns trigger
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

-- A payment funded with a PaymentIntent settles the inconsistencies about that charge.
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
create or replace function private.inconsistency_already_funded() returns trigger
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

-- A charge that already funded its payment is recorded resolved.
create trigger inconsistency_already_funded
before insert on public.processor_inconsistencies
for each row execute function private.inconsistency_already_funded();

-- Escrow is not paid to the payee while the processor may have taken the money back.
--
-- A partial refund of a held payment is refused (refund_refused, an open inconsistency), and a
-- chargeback or its decision that the database refused is recorded the same way
-- (chargeback_refused, chargeback_closing_refused). While such an inconsistency is open and
-- names the payment, or its PaymentIntent (as the object it is about, or through the event
-- that opened it: a chargeback that came before the payment was funded names no payment),
-- every move of the payment's money out of escrow to the payee (released, or split) is
-- refused (PT409). A refund to the payer is not held. Once operations settle the
-- inconsistency (resolve_processor_inconsistency), the payment moves again.

/**
 * The open inconsistency (refund_refused, chargeback_refused, chargeback_closing_refused) that
 * says the processor may have taken back money of milestone payment `payment`, funded by
 * PaymentIntent `payment_intent_id`; null when there is none.
 */
create or replace function private.processor_took_money_back(payment uuid, payment_intent_id text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select i.id from public.processor_inconsistencies as i
  where i.resolution is null
    and i.kind in ('refund_refused', 'chargeback_refused', 'chargeback_closing_refused')
    and (
      i.milestone_payment_id = payment
      or (payment_intent_id is not null and (
        i.processor_object_id = payment_intent_id
        or exists (
          select from public.webhook_events as e
          where e.id = i.webhook_event_id
            and e.payload -> 'data' -> 'object' ->> 'payment_intent' = payment_intent_id
        )
      ))
    )
  order by i.created_at, i.id
  limit 1
$$;

/**
 * BEFORE UPDATE trigger on milestone_payments, when its money would leave escrow for the payee
 * (released, split): refused (PT409) while the processor may have taken that money back.
 * Named to run after check_milestone_payment_transition, so that who may move the payment is
 * answered first.
 */
create or replace function private.hold_escrow_while_processor_took_money_back() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  inconsistency uuid := private.processor_took_money_back(
    old.id, old.processor_payment_intent_id
  );
begin
  if inconsistency is not null then
    raise exception 'milestone payment % cannot be paid to its payee: the processor may have '
    'taken its money back (processor inconsistency %)', old.id, inconsistency
    using errcode = 'PT409',
    hint = 'operations settle the inconsistency first (resolve_processor_inconsistency)';
  end if;
  return new;
end
$$;

-- A release or split waits while the processor may have taken the money back.
create trigger check_milestone_payment_unrefunded
before update of status on public.milestone_payments
for each row
when (old.status is distinct from new.status and new.status in ('released', 'split'))
execute function private.hold_escrow_while_processor_took_money_back();

-- Section: webhook events
--
-- Processor webhook events, keyed by the processor's event id so that each is handled once.
-- The stripe-webhook Edge Function verifies the signature, then calls apply_stripe_event as
-- payment_service: the event is recorded and applied in one transaction, through the same
-- rules as every other caller's statements, so an out-of-order or illegal move, a wrong amount
-- or currency or an unknown object is refused, recorded with its error and acknowledged.

-- What became of an event: received (recorded, not yet applied), processed, failed (an
-- unexpected error: applied again on the next delivery), refused (the database's rules said
-- no), ignored (a type, or an object, that moves nothing here).
create type public.webhook_event_status as enum (
  'received',
  'processed',
  'failed',
  'refused',
  'ignored'
);

create table public.webhook_events (
  id text not null,
  processor text not null default 'stripe',
  type text not null,
  payload jsonb not null,
  status public.webhook_event_status not null default 'received',
  -- The refusal or failure: its message, and its SQLSTATE (below).
  error_message text,
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  error_code text,
  -- How many times the processor delivered the event.
  deliveries integer not null default 1,
  constraint webhook_events_pkey primary key (id),
  constraint webhook_events_deliveries_check check (deliveries >= 1),
  constraint webhook_events_error_code_check check (error_code ~ '^[0-9A-Z]{5}$'),
  constraint webhook_events_error_message_check check (char_length(error_message) <= 2000),
  constraint webhook_events_id_check check (id ~ '^evt_[A-Za-z0-9]+$'),
  constraint webhook_events_payload_check check (jsonb_typeof(payload) = 'object'),
  constraint webhook_events_processor_check check (processor = 'stripe'),
  constraint webhook_events_type_check check (char_length(type) between 1 and 100)
);

comment on table public.webhook_events is
'Each processor event once (the primary key is the event id): what came, and what became of it.';

-- The events still to apply, or to apply again.
create index webhook_events_status_idx on public.webhook_events (status)
where status in ('received', 'failed');

-- charge.refunded events are looked up by their PaymentIntent when that intent's success
-- arrives after them.
create index webhook_events_payment_intent_idx
on public.webhook_events (
  (payload -> 'data' -> 'object' ->> 'payment_intent'), type
);

-- An event keeps its timestamps; a payload holding card data is refused.

/**
 * BEFORE INSERT OR UPDATE trigger on webhook_events: its error message (the database's or the
 * processor's words, which name the ids they refused) keeps no processor token
 * (private.without_processor_ids): staff read it.
 */
create or replace function private.scrub_webhook_event_error() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.error_message := private.without_processor_ids(new.error_message);
  return new;
end
$$;

create trigger scrub_error_message
before insert or update of error_message on public.webhook_events
for each row execute function private.scrub_webhook_event_error();

/**
 * BEFORE INSERT OR UPDATE trigger on webhook_events: a payload keeps no processor token in the
 * clear (private.holds_processor_token). The stripe-webhook function passes each one as its
 * lookup, so an event that still names one came another way (a function deployed before it, a
 * direct write): it is refused with an error that is not a refusal of the event (55000, object
 * not in prerequisite state), so that nothing is recorded and Stripe delivers it again, to the
 * function that passes lookups.
 */
create or replace function private.refuse_processor_tokens_in_payload() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if private.holds_processor_token(new.payload) then
    raise exception 'webhook event %: its payload names a processor token in the clear', new.id
    using errcode = '55000',
    hint = 'the stripe-webhook function passes each token as its lookup; deliver it again';
  end if;
  return new;
end
$$;

create trigger refuse_processor_tokens
before insert or update of payload on public.webhook_events
for each row execute function private.refuse_processor_tokens_in_payload();

create trigger keep_row_timestamps
before insert or update on public.webhook_events
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.webhook_events
for each row
execute function private.refuse_card_data(
  'status', 'received_at', 'processed_at', 'created_at', 'updated_at'
);

/**
 * Record and apply one verified Stripe event (payment_service only). The event is recorded
 * in webhook_events by its id exactly once, and applied in the transaction that marks it:
 * processed, or ignored (a type payguard does not act on); duplicate when it was already
 * processed, ignored or refused (a concurrent second delivery waits for the first); refused
 * when the database's rules refused it, with its error and its effects rolled back; failed on
 * an unexpected error (deadlock, serialization, lock timeout, ...), its effects rolled back,
 * to be applied again on the next delivery. The payload stored and applied is the event with
 * its card-like values redacted, and every refused money event records an inconsistency.
 * Returns {event_id, type, status, error?: {code, message}, inconsistency_id?, deliveries}.
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

/**
 * The effects of Stripe event `event` (apply_stripe_event calls it in the transaction that
 * records the event): 'processed', or 'ignored' for a type that moves nothing here. What every
 * event shares is checked here; each type's effects are its own function's (payout.canceled
 * goes to private.apply_payout_event, as payout.failed does).
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
 * Whether an error refuses an event for good (the database's rules said no: PTxxx, data and
 * integrity errors, a RAISE without a code) rather than failing it for now (anything else:
 * deadlocks, serialization failures, lock or statement timeouts, a missing privilege), which
 * the processor's next delivery retries.
 */
create or replace function private.refuses_event(error_state text) returns boolean
language sql
immutable
set search_path = ''
as $$
  select error_state like 'PT%' or left(error_state, 2) in ('22', '23')
    or error_state in ('P0001', 'P0002')
$$;

/** An amount in minor units from the processor's object: a JSON integer, never a float. */
create or replace function private.event_amount(object jsonb, field text) returns bigint
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

/** A currency from the processor's object (Stripe writes them in lower case). */
create or replace function private.event_currency(object jsonb) returns char(3)
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

/**
 * The milestone payment a PaymentIntent names in its metadata (milestone_payment_id), locked,
 * checked against the intent's amount and currency (PT422 without one, PT404 for an unknown
 * payment, PT409 for another amount or currency).
 */
create or replace function private.event_milestone_payment(intent jsonb)
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

/**
 * The funding attempt of `payment` that PaymentIntent `intent_id` belongs to: the attempt that
 * recorded it, else the current (latest) attempt if it has recorded none yet (the event came
 * before the function recorded it: it is recorded now). Null when the payment has no attempt
 * (a charge made outside begin_funding_attempt). Refused (PT409) when the intent is neither.
 */
create or replace function private.event_funding_attempt(payment uuid, intent_id text)
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

-- A money event is applied with its card-like text redacted, and a refused one is never lost.
--
-- Stripe's objects carry text the payer controls (billing_details.name, a description, …),
-- and text that looks like a card number must not make a money event vanish: no money event
-- the processor reports is dropped without a trace. So:
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
--     as refused (PT422).

/**
 * `candidate` with every value that holds card data replaced by a marker and every key that
 * names a card number or a verification value dropped (its value with it), at any depth; the
 * ids, amounts and currencies of a Stripe object stay as they are. Security definer: the
 * card-data guard's helpers are the owner's; this reads nothing.
 */
create or replace function private.event_without_card_data(candidate jsonb) returns jsonb
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

/**
 * `detail` with anything that looks like a card number removed, for an inconsistency's
 * detail. Security definer, like event_without_card_data.
 */
create or replace function private.event_detail_without_card_numbers(detail text) returns text
language sql
immutable
security definer
set search_path = ''
as $$
  select private.without_card_numbers(detail)
$$;

/**
 * The kind of inconsistency a refused money event records, or null when the event moves no
 * money. An event of a connected account that should have been the platform's is one kind
 * of its own, whatever its type.
 */
create or replace function private.refused_event_inconsistency_kind(event_type text, connected text)
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

-- One handler per event type. Each raises its refusals (PTxyz), which apply_stripe_event
-- records.

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

/**
 * payment_intent.payment_failed / canceled: the attempt fails with its reason, and the payment
 * with it when that was its current attempt.
 * Raises a refusal (PTxyz) that apply_stripe_event records.
 */
create or replace function private.apply_payment_intent_failure(event jsonb) returns text
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

-- charge.refunded confirms the refunds payguard owes.
--
-- The refund of a charge that payguard owes (a payment that staff refunded or split in a
-- dispute, a recovered charge) confirms its obligation: for the payment the intent funded
-- (refunded: the whole charge; split: the payer's share), or, when no payment holds the intent,
-- for the recovered charge, before its inconsistency is settled. A charge the processor
-- refunded whole, of a payment still funded, refunds the payment. The refund is recorded in
-- payment_transactions once. An amount other than the one owed, or a partial refund of a held
-- payment, is refused (PT422) and so reported as a refund_refused inconsistency.

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

-- Chargebacks reach the same state whatever order Stripe delivers their events in.
--
-- Stripe does not promise the order of its events: a charge.dispute.created may come before
-- its payment_intent.succeeded (refused then, PT404: no payment holds the intent yet), and a
-- charge.dispute.closed before its charge.dispute.created. So:
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
 * The refused platform events of `event_type` about chargeback `dispute_id` and/or about
 * PaymentIntent `intent_id` (a null argument does not filter): the stored (redacted) event of
 * each chargeback, the latest the processor made when there are several. Closed disputes only
 * with a status that decides them.
 */
create or replace function private.refused_chargeback_events(
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

/**
 * Resolves the open inconsistency of `inconsistency_kind` about chargeback `dispute_id`, now
 * that its event was applied after all. Security definer: payment_service records
 * inconsistencies and does not otherwise change them.
 */
create or replace function private.resolve_chargeback_inconsistency(
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

/**
 * payout.paid / payout.failed / payout.canceled: complete or fail the withdrawal whose
 * recorded payout id is the payout's, on the withdrawal's own connected account, for its
 * amount and currency. Metadata alone names nothing, and an event never moves an approved
 * withdrawal. A canceled payout (by the platform, or by Stripe, while pending) is back on the
 * connected account's balance as a failed one is: it fails the withdrawal, with the reason "the
 * processor canceled the payout" when the payout names none, and the reservation is kept until
 * the transfer is reversed. A payout no withdrawal records is ignored: recorded, and applied by
 * record_withdrawal_payout if that payout is recorded later (`payguard reconcile --stripe`
 * reports live payouts no withdrawal records).
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
  select pm.processor_account_id_lookup into payout_account from public.payout_methods as pm
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
      -- The owner reads the reason: the processor's words name no token, nor its lookup.
      left(coalesce(
        nullif(private.without_processor_ids(object ->> 'failure_message'), ''),
        nullif(private.without_processor_ids(object ->> 'failure_code'), ''),
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

-- A refused or failed webhook event can be settled by operations, in writing, once.
--
-- `payguard reconcile` lists the refused or failed events that nothing settles, so that the
-- list always means "something needs doing". An event is settled by a resolved processor
-- inconsistency that names it (`webhook_event_id`): one that a refused money event opened,
-- once recovered or resolved, or one that public.settle_webhook_event records, resolved in the
-- same statement, for an event that opened none (an event refused for good that moves no
-- money): an admin at aal2 writes what was done about it (10 to 2,000 characters). An event
-- Stripe delivers again and that is then applied leaves the list by itself (processed).

/**
 * Settle refused or failed webhook event `event_id` (an admin, aal2, with a written
 * resolution of 10 to 2,000 characters: PT403, PT422): records a processor inconsistency of
 * kind `webhook_event_refused` or `webhook_event_failed` naming the event, resolved with that
 * resolution. Refused (PT409) for an event that was applied or ignored, for one that an open
 * inconsistency names (its money is settled by recovering or resolving that one), and for one
 * already settled. PT404 for an unknown event. Returns the inconsistency. Security definer:
 * admins do not write processor_inconsistencies.
 */
create or replace function private.settle_webhook_event(event_id text, resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  event public.webhook_events;
  naming public.processor_inconsistencies;
  answer jsonb;
begin
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'settling a webhook event needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 2000) then
    raise exception 'settling webhook event % needs a written resolution of 10 to 2000 '
    'characters', event_id
    using errcode = 'PT422';
  end if;
  select * into event from public.webhook_events as e
  where e.id = settle_webhook_event.event_id
  for update;
  if not found then
    raise exception 'no webhook event %', event_id using errcode = 'PT404';
  end if;
  if event.status::text not in ('refused', 'failed') then
    raise exception 'webhook event % was %: there is nothing to settle', event.id, event.status
    using errcode = 'PT409';
  end if;
  select * into naming from public.processor_inconsistencies as i
  where i.webhook_event_id = event.id
  order by i.resolution is null desc, i.created_at
  limit 1;
  if found and naming.resolution is null then
    raise exception 'webhook event % is named by open processor inconsistency % (%): recover '
    'or resolve that one', event.id, naming.id, naming.kind
    using errcode = 'PT409';
  elsif found then
    raise exception 'webhook event % was settled at % by processor inconsistency %',
    event.id, naming.resolved_at, naming.id
    using errcode = 'PT409';
  end if;
  insert into public.processor_inconsistencies as i (
    kind, processor_object_id, webhook_event_id, detail, resolution
  )
  values (
    'webhook_event_' || event.status::text, event.id, event.id,
    event.type || ' was ' || event.status::text
    || coalesce(' (' || event.error_code || ')', '') || ' after '
    || event.deliveries || ' deliveries',
    settle_webhook_event.resolution
  )
  returning to_jsonb(i.*) into answer;
  return answer;
end
$$;

/** private.settle_webhook_event, with a refusal recorded and answered. */
create or replace function public.settle_webhook_event(event_id text, resolution text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.settle_webhook_event(event_id, resolution);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'settle_webhook_event', 'webhook_events', left(event_id, 255),
    jsonb_build_object('event_id', event_id, 'resolution', resolution),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- Section: refunds owed
--
-- Every refund payguard decides is an obligation towards the processor, recorded in the
-- transaction that decides it, sent by the refunds function and confirmed by charge.refunded:
-- payguard never decides that money goes back to a card and records only the decision. A
-- dispute that staff resolve as a refund or a split, and the recovery of a charge as
-- `refund`, each record a row of private.refund_obligations: the PaymentIntent, the amount
-- (the whole charge for a refund, the payer's share for a split, the charge for a recovery),
-- and the idempotency key (`milestone_payment:<id>:refund`, `processor_inconsistency:<id>:
-- refund`, then `…:<n>` for attempt n after a refusal Stripe answered).
-- public.refunds_to_send() lists the obligations due; the refunds function sends each (POST
-- /v1/refunds with its key) and records Stripe's refund (public.record_refund_sent) or its
-- refusal (public.record_refund_refusal); charge.refunded confirms it. `payguard reconcile`
-- reports every obligation not yet confirmed.
--
-- A chargeback that the card issuer decided for the payer is not one: the issuer took the
-- money back itself. Nor is a charge.refunded that Stripe reports for a funded payment: the
-- refund was made already.

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

-- A payment owes its payer at most one refund from a dispute.
create unique index refund_obligations_one_per_payment_idx
on private.refund_obligations (milestone_payment_id)
where reason in ('dispute_refund', 'dispute_split');

create index refund_obligations_payment_intent_id_idx
on private.refund_obligations (payment_intent_id);

-- The refunds to send, oldest first.
create index refund_obligations_due_idx
on private.refund_obligations (created_at) where status = 'due';

/**
 * An obligation is a record: never deleted (but by the retention purge seven years after its
 * last change: private.purging_closed_records, transactions.sql); what is owed never changes;
 * it moves only due → sent → confirmed (due → confirmed when charge.refunded comes first), or due →
 * canceled; its attempt only grows, and only while it is due; Stripe's refund id is set once.
 */
create or replace function private.keep_refund_obligation() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    -- Nested: the roles that update it need not execute the retention's test.
    if private.purging_closed_records(old.updated_at) then
      return old;
    end if;
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

-- An obligation keeps its timestamps and holds no card data; it is never deleted.

create trigger keep_refund_obligation
before update or delete on private.refund_obligations
for each row execute function private.keep_refund_obligation();

create trigger keep_row_timestamps
before insert or update on private.refund_obligations
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on private.refund_obligations
for each row
execute function private.refuse_card_data(
  'id',
  'milestone_payment_id',
  'processor_inconsistency_id',
  'last_failed_at',
  'sent_at',
  'confirmed_at',
  'created_at',
  'updated_at'
);

/** The idempotency key of attempt `attempt` of the refund whose first key is `base`. */
create or replace function private.refund_key(base text, attempt integer) returns text
language sql
immutable
set search_path = ''
as $$
  select base || case when attempt > 1 then ':' || attempt::text else '' end
$$;

/**
 * AFTER UPDATE trigger on milestone_payments, when a disputed payment is refunded or split:
 * payguard's decision (staff resolving the dispute, or settling the payment directly) owes the
 * payer a refund at the processor, of the whole charge or of the payer's share of the split.
 * A chargeback that the card issuer decided is not one: the issuer took the money back.
 * Security definer: the staff role that decided cannot write the obligation itself.
 */
create or replace function private.record_refund_obligation_of_payment() returns trigger
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

-- A dispute resolved as a refund or a split owes its payer a refund.
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
create or replace function private.record_refund_obligation_of_recovery() returns trigger
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

-- A charge whose recovery is a refund owes its payer that refund.
create trigger record_refund_obligation
after insert or update of recovery, resolution on public.processor_inconsistencies
for each row execute function private.record_refund_obligation_of_recovery();

/**
 * The refunds to send now (payment_service): every obligation due, but one the processor
 * refused less than `refund_retry_seconds` ago (it is sent again, under its next key, after
 * that). Each with its PaymentIntent, amount, currency, the key of its current attempt and
 * what it refunds.
 */
create or replace function public.refunds_to_send()
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

/**
 * Record the refund Stripe made for obligation `refund_obligation_id` (payment_service): it is
 * sent, awaiting charge.refunded. The same refund again changes nothing (nor after
 * charge.refunded confirmed it); another refund id is PT409, an unknown obligation PT404, a
 * canceled one PT409. Returns the obligation.
 */
create or replace function public.record_refund_sent(refund_obligation_id uuid, refund_id text)
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

/**
 * Record a refusal that Stripe answered for the current key of obligation
 * `refund_obligation_id` (payment_service): Stripe keeps that answer for the key, so the next
 * attempt goes under the next key, after `refund_retry_seconds`. Another key than the current
 * one is PT409 (the same refusal recorded again changes nothing), an obligation no longer due
 * PT409. Returns {refund_obligation_id, attempt, failure_code, next_idempotency_key}.
 */
create or replace function public.record_refund_refusal(
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
    last_failure_message = private.recordable_message(message, 500),
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

/**
 * charge.refunded's part (payment_service, from private.apply_charge_refunded): the refund
 * `refund_id` of `amount` `refund_currency` on PaymentIntent `payment_intent_id` confirms the
 * obligation of milestone payment `payment` (a dispute's refund or split), or, with `payment`
 * null, the obligation of a recovered charge, unless it was canceled. Returns the obligation
 * confirmed, or null when none is owed. An amount other than the obligation's is PT422.
 */
create or replace function private.confirm_refund_obligation(
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

-- How long a refused refund waits (refunds_to_send).
insert into private.settings (key, value, description)
values (
  'refund_retry_seconds', '3600',
  'How long a refund that the processor refused waits before it is sent again under its next '
  || 'idempotency key.'
);

-- Section: connected accounts
--
-- Connected accounts are held like customers: each is its owner's, recorded once, so that no
-- processor object is trusted because a user named it.
--   * public.processor_accounts holds each connected account once (its lookup is unique) with
--     its owner and its verification state; payment_service records the owner at onboarding
--     (public.record_processor_account, set once: the same owner again changes nothing,
--     another is PT409);
--   * account.updated records the account's verification state whether or not its owner or
--     a payout method is known yet (the account may be verified before the contractor adds a
--     bank account), and mirrors it on the account's payout methods;
--   * a payout method names its owner's recorded account: a user (authenticated) may only
--     name an account recorded as theirs (PT403 otherwise); a trusted writer (payment_service,
--     the service role, the owner of the schema) inserting the first payout method of an
--     account no one owns records it for the method's owner, as payment methods record their
--     customer; an account recorded for another user is refused (PT409) whoever writes;
--   * a new payout method starts with its account's recorded verification state.

/**
 * A user's connected account at the processor (Stripe's `acct_…`), with the processor's word
 * on it. Its owner is set once (by payment_service at onboarding, or by the account's first
 * payout method written by a trusted role); its verification state comes from account.updated,
 * which may come first. The user reads their own.
 */
create table public.processor_accounts (
  id uuid not null default gen_random_uuid(),
  -- Null until its owner is known.
  user_id uuid,
  processor text not null default 'stripe',
  verification_status text not null default 'unverified',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  state_as_of timestamptz,
  -- The connected account sealed, and its lookup (payment_methods.sql, processor tokens): only
  -- payment_service reads the sealed one. An account that account.updated reported before its
  -- owner recorded it is known by its lookup alone until payout-accounts seals it.
  processor_account_id_sealed private.sealed_token,
  processor_account_id_lookup private.token_lookup not null,
  constraint processor_accounts_pkey primary key (id),
  constraint processor_accounts_user_id_fkey foreign key (user_id)
  references public.users (id) on delete cascade,
  constraint processor_accounts_processor_check check (processor = 'stripe'),
  constraint processor_accounts_verification_status_check
  check (verification_status in ('unverified', 'pending', 'verified', 'restricted')),
  constraint processor_accounts_processor_account_id_lookup_key
  unique (processor_account_id_lookup)
);

comment on column public.processor_accounts.state_as_of is
'The processor''s time (account.updated''s created) of the verification state recorded; older '
'updates are ignored.';

create index processor_accounts_user_id_idx on public.processor_accounts (user_id);

/**
 * An account's owner is set once; the account itself is never renamed (its lookup is set once:
 * private.keep_token_lookups).
 */
create or replace function private.keep_processor_account_owner() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id <> old.id
    or (old.user_id is not null and new.user_id is distinct from old.user_id) then
    raise exception 'connected account % is recorded for its owner once and never changes hands',
    old.id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

-- An account keeps its timestamps and holds no card data; its owner is set once.

create trigger keep_processor_account_owner
before update on public.processor_accounts
for each row execute function private.keep_processor_account_owner();

-- Its lookups are set once (payment_methods.sql, processor tokens).
create trigger keep_token_lookups
before update on public.processor_accounts
for each row execute function private.keep_token_lookups(
  'processor_account_id_lookup'
);

create trigger keep_row_timestamps
before insert or update on public.processor_accounts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.processor_accounts
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'created_at', 'updated_at', 'state_as_of'
);

/**
 * Records the connected account whose lookup is `account_lookup` as `user_id`'s
 * (payment_service, at onboarding), and returns its row id and owner: the function then seals
 * the account for that row. An account account.updated recorded first gets its owner; the same
 * owner again changes nothing; another owner is PT409.
 */
create or replace function public.record_processor_account(user_id uuid, account_lookup text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  recorded public.processor_accounts;
begin
  if record_processor_account.user_id is null
    or coalesce(account_lookup, '') !~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_-]{43}$' then
    raise exception 'a connected account is recorded with its owner and its lookup (kid:…)'
    using errcode = 'PT422';
  end if;
  insert into public.processor_accounts as a (processor_account_id_lookup, user_id)
  values (account_lookup, record_processor_account.user_id)
  on conflict on constraint processor_accounts_processor_account_id_lookup_key
  do update set user_id = excluded.user_id
  where a.user_id is null
  returning * into recorded;
  if recorded.id is null then
    select * into recorded from public.processor_accounts as a
    where a.processor_account_id_lookup = account_lookup;
    if recorded.user_id is distinct from record_processor_account.user_id then
      raise exception 'connected account % is another user''s', recorded.id
      using errcode = 'PT409';
    end if;
  end if;
  return jsonb_build_object(
    'id', recorded.id,
    'user_id', recorded.user_id,
    'verification_status', recorded.verification_status,
    'sealed', recorded.processor_account_id_sealed is not null
  );
end
$$;

/**
 * A payout method names its owner's recorded connected account, and starts with its
 * verification state. A user may name only an account recorded as theirs; a trusted writer
 * (payment_service, the service role, the schema's owner) records an account no one owns for
 * the method's owner; an account recorded for another user is refused. Security definer: it
 * reads and records accounts the writer may not.
 */
create or replace function private.check_payout_method_account() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  recorded public.processor_accounts;
  writer text := current_setting('role');
begin
  select * into recorded from public.processor_accounts as a
  where a.processor_account_id_lookup = new.processor_account_id_lookup
  for update;
  if recorded.user_id is not null and recorded.user_id <> new.user_id then
    raise exception 'payout method %: its connected account is another user''s', new.id
    using errcode = 'PT409';
  end if;
  if recorded.user_id is null then
    if writer in ('authenticated', 'anon', 'admin', 'auditor', 'escrow_service') then
      raise exception 'payout method %: its connected account is not your recorded connected '
      'account', new.id
      using errcode = 'PT403',
      hint = 'a payout method is added to the connected account made for you at onboarding';
    end if;
    insert into public.processor_accounts as a (processor_account_id_lookup, user_id, processor)
    values (new.processor_account_id_lookup, new.user_id, new.processor)
    on conflict on constraint processor_accounts_processor_account_id_lookup_key
    do update set user_id = excluded.user_id
    returning * into recorded;
  end if;
  if tg_op = 'INSERT' then
    new.verification_status := recorded.verification_status;
  end if;
  return new;
end
$$;

-- A payout method names its owner's recorded connected account (or records it, first).
create trigger tie_payout_method_to_account
before insert or update of user_id, processor_account_id_lookup on public.payout_methods
for each row execute function private.check_payout_method_account();

/** How far along its course a connected account's verification state is. */
create or replace function private.account_state_rank(state text) returns integer
language sql
immutable
set search_path = ''
as $$
  select case state
    when 'unverified' then 0 when 'pending' then 1 when 'verified' then 2 when 'restricted' then 3
  end
$$;

/**
 * account.updated: the processor's word on a connected account, recorded whether or not its
 * owner or a payout method is known yet, and mirrored on the account's payout methods; an
 * update older than the state recorded is ignored.
 */
create or replace function private.apply_account_updated(event jsonb) returns text
language plpgsql
set search_path = ''
as $$
declare
  object jsonb := event -> 'data' -> 'object';
  connected text := nullif(event ->> 'account', '');
  state text;
  as_of timestamptz;
  recorded public.processor_accounts;
begin
  -- The stripe-webhook function hands events over with each processor token replaced by its
  -- lookup: the account is named by its lookup (payment_methods.sql, processor tokens).
  if coalesce(object ->> 'id', '') !~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_-]{43}$' then
    raise exception 'event % updates no connected account (its id is not a token lookup)',
    event ->> 'id'
    using errcode = 'PT422';
  end if;
  if connected is not null and connected <> object ->> 'id' then
    raise exception 'event % of connected account % updates account %',
    event ->> 'id', connected, object ->> 'id'
    using errcode = 'PT403';
  end if;
  if coalesce(event ->> 'created', '') !~ '^[0-9]{1,12}$' then
    raise exception 'event % has no creation time: its order among the account''s updates '
    'is unknown', event ->> 'id'
    using errcode = 'PT422';
  end if;
  as_of := to_timestamp((event ->> 'created')::bigint);
  state := case
    when (object ->> 'payouts_enabled')::boolean then 'verified'
    when object -> 'requirements' ->> 'disabled_reason' like 'rejected%' then 'restricted'
    else 'pending'
  end;
  insert into public.processor_accounts as a (
    processor_account_id_lookup, verification_status, state_as_of
  )
  values (object ->> 'id', 'unverified', null)
  on conflict on constraint processor_accounts_processor_account_id_lookup_key do nothing;
  select * into strict recorded from public.processor_accounts as a
  where a.processor_account_id_lookup = object ->> 'id'
  for update;
  if recorded.state_as_of > as_of or (
    recorded.state_as_of = as_of
    and private.account_state_rank(recorded.verification_status)
    > private.account_state_rank(state)
  ) then
    -- The processor said something newer already.
    return 'ignored';
  end if;
  update public.processor_accounts as a
  set verification_status = state, state_as_of = as_of
  where a.id = recorded.id
    and (a.verification_status, a.state_as_of) is distinct from (state, as_of);
  update public.payout_methods as pm set verification_status = state
  where pm.processor_account_id_lookup = object ->> 'id' and pm.verification_status <> state;
  return 'processed';
end
$$;

-- A contractor's connected account is made by the payout-accounts function, and the database
-- decides first.
--
-- The payout-accounts Edge Function's first database call is
-- public.begin_onboarding_payout_account, in a transaction of its own that commits before
-- Stripe is called (as begin_saving_payment_method for payment-methods):
--   * every request counts towards the caller's processor_accounts.onboard limit (Medium, 20
--     a minute: each request calls Stripe, whose rate limit is the whole account's), a retry
--     and a request Stripe then refuses or never answers too; past it, 429 and no Stripe call;
--   * it needs aal2 and a contractor (public.users.role, set at sign-up or by an admin): a
--     connected account is where a contractor's wallet is paid out to (PT403 otherwise);
--   * it names the caller's recorded account when there is one (the function then only asks
--     Stripe for an onboarding link), else the parameters of the account to make and the
--     idempotency key to make it under, `user:<id>:connected_account`. The parameters
--     (country, email) are pinned on the first request of an attempt, so that a retry sends
--     Stripe the very same request: Stripe answers the same key with the same account for
--     24 hours (two concurrent requests, a retry after a timeout, a retry after the database
--     failed to record the account), and refuses the key with other parameters.
-- A refusal Stripe answered is kept by Stripe for its key too: the function records it
-- (public.record_payout_account_refusal, payment_service), and the next request opens the
-- next attempt under the next key (`user:<id>:connected_account:2`, …), with the parameters
-- of that request.

/**
 * The making of a contractor's connected account at the processor, one row per user: the
 * attempt the user is at (its idempotency key is `user:<id>:connected_account`, then
 * `…:<attempt>`), the parameters pinned for it (null once the processor refused them: the next
 * request pins its own), and the processor's last refusal. Written only by the onboarding
 * functions (security definer); no API role reads it.
 */
create table private.payout_account_onboardings (
  user_id uuid primary key references public.users (id) on delete cascade,
  attempt integer not null default 1 check (attempt >= 1),
  country char(2) check (country ~ '^[A-Z]{2}$'),
  email text check (char_length(email) <= 320),
  pinned_at timestamptz,
  last_failure_code text check (last_failure_code ~ '^[a-z0-9_]{1,100}$'),
  last_failure_message text check (char_length(last_failure_message) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((country is null) = (pinned_at is null))
);

-- An onboarding keeps its timestamps and holds no card data.

create trigger keep_row_timestamps
before insert or update on private.payout_account_onboardings
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on private.payout_account_onboardings
for each row
execute function private.refuse_card_data(
  'user_id', 'pinned_at', 'created_at', 'updated_at'
);

/** The idempotency key of `user_id`'s attempt `attempt` at making their connected account. */
create or replace function private.payout_account_key(user_id uuid, attempt integer) returns text
language sql
immutable
set search_path = ''
as $$
  select 'user:' || user_id::text || ':connected_account'
    || case when attempt > 1 then ':' || attempt::text else '' end
$$;

/**
 * Allow the signed-in caller to onboard for payouts: the call counted against
 * processor_accounts.onboard first, then aal2 and the contractor role required. Answers the
 * caller's recorded connected account by its row (`account`, `verification_status`; never its
 * id at the processor, a token), or, when there is none, the account to make:
 * `idempotency_key`, `attempt`, and the `country` and `email` pinned for the attempt
 * (`requested_country`, else the setting connected_account_default_country; the email of the
 * user's profile). Raises its refusals;
 * public.begin_onboarding_payout_account records and answers them.
 */
create or replace function private.begin_onboarding_payout_account(requested_country text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  caller uuid := (select auth.uid());
  account public.processor_accounts;
  onboarding private.payout_account_onboardings;
  country text;
begin
  if caller is null or current_setting('role', true) is distinct from 'authenticated' then
    raise exception 'a connected account is made for its owner, signed in'
    using errcode = '42501';
  end if;
  perform private.enforce_rate_limit('processor_accounts.onboard');
  if (select auth.jwt() ->> 'aal') is distinct from 'aal2' then
    raise exception 'onboarding for payouts needs multi-factor authentication (aal2)'
    using errcode = 'PT403', hint = 'verify a second factor, then retry';
  end if;
  if not exists (
    select from public.users as u where u.id = caller and u.role = 'contractor'
  ) then
    raise exception 'only a contractor is paid out: a connected account is made for contractors'
    using errcode = 'PT403', hint = 'a user''s role is set at sign-up, or by an admin';
  end if;
  select * into account from public.processor_accounts as a
  where a.user_id = caller
  order by a.created_at, a.id
  limit 1;
  if found then
    -- The account by its row: the function reads its token as payment_service.
    return jsonb_build_object(
      'account', account.id,
      'verification_status', account.verification_status
    );
  end if;
  country := coalesce(requested_country, private.setting('connected_account_default_country') #>> '{}');
  if country !~ '^[A-Z]{2}$' then
    raise exception 'country must be an ISO 3166-1 alpha-2 code in capitals, such as US'
    using errcode = 'PT422';
  end if;
  insert into private.payout_account_onboardings as o (user_id, country, email, pinned_at)
  select caller, country, u.email, now() from public.users as u where u.id = caller
  on conflict (user_id) do update
  set country = excluded.country, email = excluded.email, pinned_at = excluded.pinned_at
  where o.country is null
  returning * into onboarding;
  if onboarding.user_id is null then
    select * into onboarding from private.payout_account_onboardings as o
    where o.user_id = caller;
  end if;
  return jsonb_build_object(
    'account', null,
    'verification_status', null,
    'attempt', onboarding.attempt,
    'idempotency_key', private.payout_account_key(caller, onboarding.attempt),
    'country', onboarding.country,
    'email', onboarding.email
  );
end
$$;

/** private.begin_onboarding_payout_account, with a refusal recorded, counted and answered. */
create or replace function public.begin_onboarding_payout_account(country text default null)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.begin_onboarding_payout_account(country);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'begin_onboarding_payout_account', 'processor_accounts', null,
    jsonb_build_object('country', country),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- Counted by public.begin_onboarding_payout_account.
insert into private.rate_limit_rules (operation, rate_level, rpc)
values ('processor_accounts.onboard', 'medium', 'begin_onboarding_payout_account');

insert into private.settings (key, value, description)
values (
  'connected_account_default_country', '"US"',
  'The country (ISO 3166-1 alpha-2) of a contractor''s connected account when the request '
  || 'names none.'
);

/**
 * Records that the processor refused to make `user_id`'s connected account under
 * `idempotency_key` (payment_service, for an answer the processor gave; never for a request
 * that got no answer, whose retry keeps its key). The key must be the user's current one
 * (PT409); the same refusal again changes nothing. The next request opens the next attempt,
 * with its own parameters. Answers {user_id, attempt, failure_code, next_idempotency_key}.
 */
create or replace function public.record_payout_account_refusal(
  user_id uuid, idempotency_key text, code text, message text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  onboarding private.payout_account_onboardings;
begin
  if coalesce(code, '') !~ '^[a-z0-9_]{1,100}$' then
    raise exception 'a refusal is recorded with the processor''s error code'
    using errcode = 'PT422';
  end if;
  select * into onboarding from private.payout_account_onboardings as o
  where o.user_id = record_payout_account_refusal.user_id
  for update;
  if not found then
    raise exception 'no connected account is being made for user %', user_id
    using errcode = 'PT404';
  end if;
  if onboarding.attempt > 1
    and idempotency_key = private.payout_account_key(onboarding.user_id, onboarding.attempt - 1)
    and onboarding.last_failure_code = code then
    null;  -- the same refusal, recorded already
  elsif idempotency_key is distinct from
    private.payout_account_key(onboarding.user_id, onboarding.attempt) then
    raise exception 'idempotency key % is not the current attempt of user %''s connected account',
    idempotency_key, user_id
    using errcode = 'PT409';
  else
    update private.payout_account_onboardings as o
    set attempt = o.attempt + 1, country = null, email = null, pinned_at = null,
      last_failure_code = code, last_failure_message = private.recordable_message(message, 500)
    where o.user_id = onboarding.user_id
    returning * into onboarding;
  end if;
  return jsonb_build_object(
    'user_id', onboarding.user_id,
    'attempt', onboarding.attempt - 1,
    'failure_code', onboarding.last_failure_code,
    'next_idempotency_key', private.payout_account_key(onboarding.user_id, onboarding.attempt)
  );
end
$$;

-- Section: withdrawals at the processor
--
-- A withdrawal is paid out in two steps, each asked of the processor by the payouts function
-- (payment_service): a transfer from the platform to the contractor's connected account, then
-- a payout from that account to their bank.
--
-- Money goes only to a connected account the processor verified: a payout method is payable
-- only while its owner's recorded connected account (processor_accounts) is `verified`, which
-- withdrawals_to_pay_out and record_withdrawal_transfer both ask. The absence of the
-- processor's word (`unverified`, the state of every new method and of one whose
-- account.updated never came) is never taken as its yes.

/**
 * Whether the processor may pay out to `payout_method`: its connected account is recorded as
 * its owner's and verified. Security definer: the caller need not read the account.
 */
create or replace function private.payout_method_payable(payout_method uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.payout_methods as pm
    join public.processor_accounts as a
      on a.processor_account_id_lookup = pm.processor_account_id_lookup
      and a.user_id = pm.user_id
    where pm.id = payout_method and a.verification_status = 'verified'
  )
$$;

/**
 * The approved withdrawals not yet paid out to a payable payout method, with what a payout
 * needs (payment_service): the amount and currency, the payout method and its external
 * account, sealed (the payout's destination: the bank account the payout method names, never
 * whichever the connected account holds as its default at the processor), its connected
 * account (its row and its sealed token; the payouts function opens both), the transfer id
 * if one was already
 * recorded, the idempotency keys to send (those of the attempt each step is at: a step the
 * processor refused gets the next key), the attempts' numbers, and the last refusal's code, if
 * any.
 */
create or replace function public.withdrawals_to_pay_out()
returns table (
  withdrawal_id uuid,
  user_id uuid,
  amount_minor bigint,
  currency char(3),
  account_id uuid,
  account_sealed jsonb,
  payout_method_id uuid,
  processor_transfer_id text,
  transfer_idempotency_key text,
  payout_idempotency_key text,
  transfer_attempt integer,
  payout_attempt integer,
  last_failure_code text,
  external_account_sealed jsonb
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.user_id, w.amount_minor, w.currency, account.id,
    account.processor_account_id_sealed, pm.id, w.processor_transfer_id,
    private.withdrawal_step_key(w.id, 'transfer', t.attempt),
    private.withdrawal_step_key(w.id, 'payout', p.attempt),
    t.attempt, p.attempt,
    (
      select a.failure_code from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.status = 'failed'
      order by a.created_at desc, a.attempt desc
      limit 1
    ),
    pm.processor_external_account_id_sealed
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'transfer') as attempt
  ) as t
  cross join lateral (select private.withdrawal_step_attempt(w.id, 'payout') as attempt) as p
  where w.status = 'approved' and w.processor_payout_id is null
    -- Not during its payout method's cool-down, unless two admins approved it (withdrawals.sql).
    and private.withdrawal_clear_of_cool_down(w.id)
    -- Not while payouts are frozen, nor to a user whose payments are suspended
    -- (incident_controls.sql).
    and private.platform_freeze('payouts') is null
    and private.payment_suspension(w.user_id) is null
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
$$;

/**
 * BEFORE UPDATE trigger on withdrawals: a withdrawal's transfer id is recorded once, while it
 * is approved; or, once, after it failed or was canceled while its transfer request was
 * unanswered (the transfer found at the processor).
 */
create or replace function private.keep_withdrawal_transfer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.processor_transfer_id is distinct from old.processor_transfer_id and (
    old.processor_transfer_id is not null
    or not (
      (old.status = 'approved' and new.status = 'approved')
      or (
        old.status in ('failed', 'canceled') and new.status = old.status
        and private.withdrawal_transfer_unanswered(old.id)
      )
    )
  ) then
    raise exception 'withdrawal %: the processor''s transfer id is recorded once, while it is '
    'approved', old.id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

-- A withdrawal's transfer id is set once.
create trigger keep_withdrawal_transfer
before update of processor_transfer_id on public.withdrawals
for each row execute function private.keep_withdrawal_transfer();

/**
 * Record the processor's transfer `transfer_id` for withdrawal `withdrawal_id`
 * (payment_service): set once, while the withdrawal is approved (and its payout method
 * payable). Also for a withdrawal that failed or was canceled while its transfer request was
 * unanswered: the transfer found at the processor is recorded, which opens its
 * transfer_unreversed inconsistency, and it is reversed like any other (its reservation kept
 * until then). PT422 for an id that is not tr_…. A
 * transfer_unrecorded inconsistency about the transfer (reported when an earlier call could
 * not record it) is resolved with it.
 */
create or replace function public.record_withdrawal_transfer(withdrawal_id uuid, transfer_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.processor_transfer_id = transfer_id then
    return to_jsonb(withdrawal);
  end if;
  if coalesce(transfer_id, '') !~ '^tr_[A-Za-z0-9]+$' then
    raise exception 'a transfer''s id is tr_…, not %', coalesce(transfer_id, 'nothing')
    using errcode = 'PT422';
  end if;
  if withdrawal.status in ('failed', 'canceled') and withdrawal.processor_transfer_id is null
    and private.withdrawal_transfer_unanswered(withdrawal.id) then
    -- Asked for before the withdrawal ended, the transfer was made: recorded, it is reversed.
    update public.withdrawals as w
    set processor_transfer_id = record_withdrawal_transfer.transfer_id
    where w.id = record_withdrawal_transfer.withdrawal_id
    returning * into withdrawal;
    perform private.resolve_unrecorded_withdrawal_object(
      'transfer_unrecorded', transfer_id, withdrawal.id
    );
    return to_jsonb(withdrawal);
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal_id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if not private.payout_method_payable(withdrawal.payout_method_id) then
    raise exception 'withdrawal %: the processor cannot pay out to its payout method yet',
    withdrawal_id
    using errcode = 'PT409', hint = 'wait for the account to be verified';
  end if;
  update public.withdrawals as w
  set processor_transfer_id = record_withdrawal_transfer.transfer_id
  where w.id = record_withdrawal_transfer.withdrawal_id
  returning * into withdrawal;
  perform private.resolve_unrecorded_withdrawal_object(
    'transfer_unrecorded', transfer_id, withdrawal.id
  );
  return to_jsonb(withdrawal);
end
$$;

/**
 * Record the processor's payout `payout_id` for approved withdrawal `withdrawal_id`
 * (payment_service): the withdrawal moves to processing. Then the payout's events that came
 * before (kept as ignored) are applied, in the order they were received: payout.paid completes
 * the withdrawal, payout.failed or payout.canceled fails it. A kept event refused then is
 * marked refused and recorded as a payout_refused inconsistency. A payout_unrecorded
 * inconsistency about the payout is resolved with it. PT422 for an id that is not po_….
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

-- A step the processor refused is retried under a new idempotency key.
--
-- The processor keeps its first answer to an idempotency key for 24 hours, a refusal
-- included, and replays it to every request under that key: a payout refused because the
-- connected account could not yet receive one (payouts_not_allowed) would be refused again on
-- every retry for a day under one fixed key. So the processor's refusals are recorded, each
-- once, in withdrawal_processor_attempts (the step, its attempt number, the key it was sent
-- under, the processor's error code and message): record_withdrawal_processor_failure, as
-- payment_service, for an answer the processor gave (never for a request that got no answer, a
-- network error or a 5xx: a retry of that one must keep its key, so that the processor runs it
-- at most once). The next attempt of that step gets the next key: attempt 1 is
-- `withdrawal:<id>:payout` (or `…:transfer`, `…:reversal`), attempt n is
-- `withdrawal:<id>:payout:<n>`. A refusal is recorded only for the step the withdrawal is at,
-- under its current key, and never for a transfer once one is recorded: a transfer made is
-- never sent again, so nothing is paid twice.

/**
 * The processor's answers to a withdrawal's steps that the withdrawal itself does not record:
 * a refusal of its transfer, its payout or the reversal of its transfer (status failed, with
 * the processor's error code), and a reversal made (status succeeded, with its `trr_…`).
 * Appended by payment_service, never changed or deleted.
 */
create table public.withdrawal_processor_attempts (
  id uuid primary key default gen_random_uuid(),
  withdrawal_id uuid not null references public.withdrawals (id),
  step text not null check (step in ('transfer', 'payout', 'reversal')),
  attempt integer not null check (attempt >= 1),
  idempotency_key text not null unique check (char_length(idempotency_key) <= 255),
  status text not null check (status in ('failed', 'succeeded')),
  processor_object_id text unique check (processor_object_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  failure_code text check (failure_code ~ '^[a-z0-9_]{1,100}$'),
  failure_message text check (char_length(failure_message) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (withdrawal_id, step, attempt),
  check ((status = 'failed') = (failure_code is not null)),
  check ((status = 'succeeded') = (processor_object_id is not null))
);

/** A processor's answer is a record: never changed, never deleted. */
create or replace function private.keep_withdrawal_processor_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'attempt % of the % of withdrawal % is a record of the processor''s answer: '
  'it never changes', old.attempt, old.step, old.withdrawal_id
  using errcode = 'PT409';
end
$$;

-- An answer keeps its timestamps and holds no card data; it is never changed or deleted.

create trigger keep_row_timestamps
before insert or update on public.withdrawal_processor_attempts
for each row execute function private.keep_row_timestamps();

create trigger keep_withdrawal_processor_attempt
before update or delete on public.withdrawal_processor_attempts
for each row execute function private.keep_withdrawal_processor_attempt();

create trigger refuse_card_data
before insert or update
on public.withdrawal_processor_attempts
for each row
execute function private.refuse_card_data(
  'id', 'withdrawal_id', 'created_at', 'updated_at'
);

/**
 * The idempotency key of attempt `attempt` of step `step` ('transfer', 'payout',
 * 'reversal') of withdrawal `withdrawal`: `withdrawal:<id>:<step>` for the first, then
 * `withdrawal:<id>:<step>:<n>`.
 */
create or replace function private.withdrawal_step_key(withdrawal uuid, step text, attempt integer)
returns text
language sql
immutable
set search_path = ''
as $$
  select 'withdrawal:' || withdrawal || ':' || step
    || case when attempt > 1 then ':' || attempt else '' end
$$;

/** The attempt that step `step` of withdrawal `withdrawal` is at: one more than its refusals. */
create or replace function private.withdrawal_step_attempt(withdrawal uuid, step text)
returns integer
language sql
stable
set search_path = ''
as $$
  select 1 + count(*)::integer from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal and a.step = withdrawal_step_attempt.step
    and a.status = 'failed'
$$;

/**
 * Record that the processor refused step `step` ('transfer', 'payout' or 'reversal') of
 * withdrawal `withdrawal_id`, sent under `idempotency_key`, with its error `code` and
 * `message` (payment_service). Only for an answer the processor gave: a request that got no
 * answer is retried under the same key. The key must be the one the step is at (PT409
 * otherwise: another call moved on); the same refusal again changes nothing. Refused (PT409):
 * a transfer once one is recorded (it is never sent again), a payout before the transfer or
 * after one is recorded, a step of a withdrawal no longer at it. A transfer's refusal is also
 * recorded for a withdrawal that ended while that transfer request was unanswered (its key the
 * request's), which voids the reservation: no transfer was made. Returns {withdrawal_id, step,
 * attempt, failure_code, next_idempotency_key}.
 */
create or replace function public.record_withdrawal_processor_failure(
  withdrawal_id uuid, step text, idempotency_key text, code text, message text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
  ended_unanswered boolean;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_processor_failure.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if step is null or step not in ('transfer', 'payout', 'reversal') then
    raise exception 'a withdrawal''s step is its transfer, its payout or its reversal, not %',
    coalesce(step, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into recorded from public.withdrawal_processor_attempts as a
  where a.idempotency_key = record_withdrawal_processor_failure.idempotency_key;
  if found then
    if (recorded.withdrawal_id, recorded.step, recorded.status)
      is distinct from (withdrawal.id, step, 'failed') then
      raise exception 'idempotency key % is not a refused % of withdrawal %',
      idempotency_key, step, withdrawal.id
      using errcode = 'PT409';
    end if;
  else
    ended_unanswered := step = 'transfer' and withdrawal.status in ('failed', 'canceled')
      and withdrawal.processor_transfer_id is null
      and private.withdrawal_transfer_unanswered(withdrawal.id);
    if step = 'transfer' and not ended_unanswered and (
      withdrawal.status <> 'approved' or withdrawal.processor_transfer_id is not null
    ) then
      raise exception 'withdrawal % is % with transfer %: its transfer is not being sent',
      withdrawal.id, withdrawal.status, coalesce(withdrawal.processor_transfer_id, 'none')
      using errcode = 'PT409';
    end if;
    if step = 'payout' and (
      withdrawal.status <> 'approved' or withdrawal.processor_transfer_id is null
      or withdrawal.processor_payout_id is not null
    ) then
      raise exception 'withdrawal % is %: its payout is not being sent', withdrawal.id,
      withdrawal.status
      using errcode = 'PT409';
    end if;
    if step = 'reversal' and (
      withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is null
      or exists (
        select from public.withdrawal_processor_attempts as a
        where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded'
      )
    ) then
      raise exception 'withdrawal % is %: its transfer is not being reversed', withdrawal.id,
      withdrawal.status
      using errcode = 'PT409';
    end if;
    at_attempt := private.withdrawal_step_attempt(withdrawal.id, step);
    if idempotency_key is distinct from private.withdrawal_step_key(withdrawal.id, step, at_attempt)
      then
      raise exception 'the % of withdrawal % is at attempt %, not under key %',
      step, withdrawal.id, at_attempt, coalesce(idempotency_key, 'none')
      using errcode = 'PT409', hint = 'list the withdrawal again for its current key';
    end if;
    insert into public.withdrawal_processor_attempts as a (
      withdrawal_id, step, attempt, idempotency_key, status, failure_code, failure_message
    )
    values (
      withdrawal.id, step, at_attempt, idempotency_key, 'failed',
      coalesce(
        left(nullif(regexp_replace(lower(coalesce(code, '')), '[^a-z0-9_]', '_', 'g'), ''), 100),
        'processor_error'
      ),
      private.recordable_message(message, 500)
    )
    returning * into recorded;
    if ended_unanswered then
      perform private.void_untransferred_withdrawal_reservation(withdrawal.id);
    end if;
  end if;
  return jsonb_build_object(
    'withdrawal_id', recorded.withdrawal_id,
    'step', recorded.step,
    'attempt', recorded.attempt,
    'failure_code', recorded.failure_code,
    'next_idempotency_key',
    private.withdrawal_step_key(recorded.withdrawal_id, recorded.step, recorded.attempt + 1)
  );
end
$$;

-- A transfer or payout that may exist at the processor is recorded before it is asked for.
--
-- A transfer the processor made whose answer was lost (a network cut, a timeout, the runtime
-- stopping the run) must not be forgotten: its withdrawal, canceled meanwhile, would give the
-- money back to the wallet while the transfer sat on the connected account, and a retry more
-- than 24 hours later (the processor forgets idempotency keys) would make a second transfer.
-- So:
--   * begin_withdrawal_step(withdrawal_id, step) (payment_service) records the request of a
--     withdrawal's transfer or payout, its attempt and key, in
--     private.withdrawal_processor_requests, before the processor is asked, and answers
--     whether that request was already sent (`resumed`): the function then looks for what
--     the processor made under it before asking again;
--   * a transfer request is unanswered while no transfer is recorded and no answer (a refusal,
--     or a finding that it was not made) is recorded under its key. While one is, the
--     withdrawal's reservation is kept when it fails or is canceled (settle_withdrawal does
--     not void it);
--   * the transfer of such a withdrawal, found at the processor afterwards, is recorded by
--     record_withdrawal_transfer (the one change a settled withdrawal still takes), which
--     opens its transfer_unreversed inconsistency: it is reversed like any other;
--   * record_withdrawal_transfer_not_made(withdrawal_id, idempotency_key) records that the
--     processor has no transfer for the request (asked more than a minute after it was sent,
--     longer than the function waits for the processor) and voids the reservation;
--   * withdrawals_with_unanswered_transfer() lists the withdrawals that ended while their
--     transfer request was unanswered, for the payouts function to settle.

/**
 * Each request of a withdrawal's transfer or payout, recorded before the processor is asked
 * (payment_service, through begin_withdrawal_step): its attempt and idempotency key, and its
 * id, which the request carries in its metadata (`request`) so that what the processor made
 * for it can be told apart from what someone else made. Never changed or deleted; no API role
 * reads it.
 */
create table private.withdrawal_processor_requests (
  id uuid primary key default gen_random_uuid(),
  withdrawal_id uuid not null references public.withdrawals (id),
  step text not null check (step in ('transfer', 'payout')),
  attempt integer not null check (attempt >= 1),
  idempotency_key text not null unique check (char_length(idempotency_key) <= 255),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (withdrawal_id, step, attempt)
);

/** A request sent to the processor is a record: never changed, never deleted. */
create or replace function private.keep_withdrawal_processor_request() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'the request of attempt % of the % of withdrawal % was sent: it never changes',
  old.attempt, old.step, old.withdrawal_id
  using errcode = 'PT409';
end
$$;

-- A request keeps its timestamps and holds no card data; it is never changed or deleted.

create trigger keep_row_timestamps
before insert or update on private.withdrawal_processor_requests
for each row execute function private.keep_row_timestamps();

create trigger keep_withdrawal_processor_request
before update or delete on private.withdrawal_processor_requests
for each row execute function private.keep_withdrawal_processor_request();

create trigger refuse_card_data
before insert or update
on private.withdrawal_processor_requests
for each row
execute function private.refuse_card_data(
  'id', 'withdrawal_id', 'created_at', 'updated_at'
);

/**
 * The request of step `step` ('transfer' or 'payout') of withdrawal `withdrawal` that the
 * processor may have carried out without payguard knowing: sent, the step's object not
 * recorded on the withdrawal, and no answer (a refusal, or a finding that it was not made)
 * recorded under its key in withdrawal_processor_attempts. Null when there is none.
 */
create or replace function private.unanswered_withdrawal_request(withdrawal uuid, step text)
returns private.withdrawal_processor_requests
language sql
stable
security definer
set search_path = ''
as $$
  select r.* from private.withdrawal_processor_requests as r
  inner join public.withdrawals as w on w.id = r.withdrawal_id
  where r.withdrawal_id = withdrawal and r.step = unanswered_withdrawal_request.step
    and case r.step
      when 'transfer' then w.processor_transfer_id is null
      else w.processor_payout_id is null
    end
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.idempotency_key = r.idempotency_key
    )
  order by r.attempt desc
  limit 1
$$;

/** Whether withdrawal `withdrawal` has a transfer request the processor may have carried out. */
create or replace function private.withdrawal_transfer_unanswered(withdrawal uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select (private.unanswered_withdrawal_request(withdrawal, 'transfer')).id is not null
$$;

/**
 * Record that payment_service is about to ask the processor for step `step` ('transfer' or
 * 'payout') of approved withdrawal `withdrawal_id`, before it asks: the step's current
 * attempt and key (those withdrawals_to_pay_out names). Answers {withdrawal_id, step, attempt,
 * idempotency_key, request_id, sent_at, resumed}: `resumed` is true when this request was
 * already recorded and never answered, so that the processor may have carried it out; the
 * caller then looks for it (a transfer in `transfer_group` `withdrawal:<id>`, a payout on the
 * connected account whose `metadata.request` is `request_id`) before asking again under the
 * same key. Refused (PT409): a withdrawal that is not approved, a transfer once one is
 * recorded, a payout before its transfer or after one is recorded, a payout method the
 * processor cannot pay yet. PT404 for an unknown withdrawal, PT422 for another step.
 */
create or replace function public.begin_withdrawal_step(withdrawal_id uuid, step text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  at_attempt integer;
  key text;
  request private.withdrawal_processor_requests;
  resumed boolean := true;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = begin_withdrawal_step.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if step is null or step not in ('transfer', 'payout') then
    raise exception 'a withdrawal''s request is its transfer or its payout, not %',
    coalesce(step, 'nothing')
    using errcode = 'PT422';
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal.id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if step = 'transfer' and withdrawal.processor_transfer_id is not null then
    raise exception 'withdrawal % has transfer %: a transfer made is never sent again',
    withdrawal.id, withdrawal.processor_transfer_id
    using errcode = 'PT409';
  end if;
  if step = 'payout' and withdrawal.processor_transfer_id is null then
    raise exception 'withdrawal % has no transfer recorded: its payout comes after it',
    withdrawal.id
    using errcode = 'PT409';
  end if;
  if step = 'payout' and withdrawal.processor_payout_id is not null then
    raise exception 'withdrawal % was paid out by %', withdrawal.id, withdrawal.processor_payout_id
    using errcode = 'PT409';
  end if;
  if not private.payout_method_payable(withdrawal.payout_method_id) then
    raise exception 'withdrawal %: the processor cannot pay out to its payout method yet',
    withdrawal.id
    using errcode = 'PT409', hint = 'wait for the account to be verified';
  end if;
  at_attempt := private.withdrawal_step_attempt(withdrawal.id, step);
  key := private.withdrawal_step_key(withdrawal.id, step, at_attempt);
  select * into request from private.withdrawal_processor_requests as r
  where r.idempotency_key = key;
  if not found then
    -- A new request starts only while no freeze, suspension or cool-down holds it
    -- (incident_controls.sql); one made already is resumed under its key.
    perform private.refuse_payout_start(withdrawal.id);
    resumed := false;
    insert into private.withdrawal_processor_requests (withdrawal_id, step, attempt, idempotency_key)
    values (withdrawal.id, step, at_attempt, key)
    returning * into request;
  end if;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'step', step,
    'attempt', at_attempt,
    'idempotency_key', key,
    'request_id', request.id,
    'sent_at', request.created_at,
    'resumed', resumed
  );
end
$$;

/**
 * Void the reservation of withdrawal `withdrawal`, ended (failed or canceled) with no transfer
 * recorded, once its last transfer request is answered: the processor made no transfer for it.
 * Does nothing while a request is unanswered or for a withdrawal that has not ended.
 */
create or replace function private.void_untransferred_withdrawal_reservation(withdrawal uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (
    select from public.withdrawals as w
    where w.id = withdrawal and w.status in ('failed', 'canceled')
      and w.processor_transfer_id is null
  ) and not private.withdrawal_transfer_unanswered(withdrawal) then
    perform private.ledger_resolve(private.withdrawal_reservation(withdrawal), false);
  end if;
end
$$;

/**
 * Resolve the open `kind` inconsistency (transfer_unrecorded, payout_unrecorded) about
 * `object_id`, reported when the database refused to record it, now that withdrawal
 * `withdrawal` records it. Security definer: payment_service resolves no inconsistency itself.
 */
create or replace function private.resolve_unrecorded_withdrawal_object(
  kind text, object_id text, withdrawal uuid
) returns void
language sql
security definer
set search_path = ''
as $$
  update public.processor_inconsistencies as i
  set resolution = 'Recorded: ' || object_id || ' is recorded for withdrawal ' || withdrawal
  where i.kind = resolve_unrecorded_withdrawal_object.kind
    and i.kind in ('transfer_unrecorded', 'payout_unrecorded')
    and i.processor_object_id = object_id and i.resolution is null
$$;

/**
 * Record that the processor has no transfer for the unanswered transfer request `idempotency_key`
 * of withdrawal `withdrawal_id`, which failed or was canceled while it was unanswered
 * (payment_service, after looking for it in the transfer group `withdrawal:<id>`): the request
 * is answered `not_made` and the withdrawal's reservation voided, the money back in the wallet.
 * Only a request sent more than a minute ago (PT409: the function waits 20 s for the
 * processor, so no request under that key can still be in flight after a minute; an ended
 * withdrawal's key is never sent again). PT409 also for a withdrawal that has not ended, one
 * with a transfer recorded, and another key than the unanswered request's; PT404 for an
 * unknown withdrawal. Returns {withdrawal_id, idempotency_key, failure_code}. Security definer:
 * the requests are no API role's to read.
 */
create or replace function public.record_withdrawal_transfer_not_made(
  withdrawal_id uuid, idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  request private.withdrawal_processor_requests;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer_not_made.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is not null
  then
    raise exception 'withdrawal % is % with transfer %: only a withdrawal that ended with its '
    'transfer request unanswered is settled this way', withdrawal.id, withdrawal.status,
    coalesce(withdrawal.processor_transfer_id, 'none')
    using errcode = 'PT409';
  end if;
  request := private.unanswered_withdrawal_request(withdrawal.id, 'transfer');
  if request.id is null or request.idempotency_key is distinct from idempotency_key then
    raise exception 'withdrawal % has no unanswered transfer request under key %', withdrawal.id,
    coalesce(idempotency_key, 'none')
    using errcode = 'PT409';
  end if;
  if request.created_at > now() - interval '1 minute' then
    raise exception 'the transfer request % of withdrawal % was sent at %: it may still be in '
    'flight', idempotency_key, withdrawal.id, request.created_at
    using errcode = 'PT409', hint = 'look for it again a minute after it was sent';
  end if;
  insert into public.withdrawal_processor_attempts as a (
    withdrawal_id, step, attempt, idempotency_key, status, failure_code, failure_message
  )
  values (
    withdrawal.id, 'transfer', request.attempt, request.idempotency_key, 'failed', 'not_made',
    'The processor has no transfer in group withdrawal:' || withdrawal.id
    || ': the request was not carried out'
  );
  perform private.void_untransferred_withdrawal_reservation(withdrawal.id);
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'idempotency_key', request.idempotency_key,
    'failure_code', 'not_made'
  );
end
$$;

/**
 * The withdrawals that failed or were canceled while their transfer request was unanswered
 * (payment_service), with the connected account (its row and its sealed token): the
 * transfer may exist at the processor, and the reservation is kept
 * until the payouts function finds it (record_withdrawal_transfer, then its reversal) or finds
 * that it was not made (record_withdrawal_transfer_not_made).
 */
create or replace function public.withdrawals_with_unanswered_transfer()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  account_id uuid,
  account_sealed jsonb,
  idempotency_key text,
  request_id uuid,
  sent_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, account.id,
    account.processor_account_id_sealed, r.idempotency_key, r.id, r.created_at
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
  cross join lateral private.unanswered_withdrawal_request(w.id, 'transfer') as r
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is null
    and r.id is not null
  order by w.updated_at, w.id
$$;

-- A withdrawal that ends unpaid after its transfer gets its transfer reversed.
--
-- When the payout fails (payout.failed: the bank returned it, and its amount is back on the
-- connected account's balance), or an approved withdrawal is canceled after its transfer, the
-- money sits on the connected account: voiding the withdrawal's reservation at once would pay
-- the contractor twice in effect. So a withdrawal that fails or is canceled with a transfer
-- recorded opens, in that transaction, a `transfer_unreversed` processor inconsistency naming
-- the transfer (which `payguard reconcile` reports), and is listed by withdrawals_to_reverse()
-- for payment_service (the payouts function) to reverse the transfer at the processor, under a
-- key derived from the withdrawal (`withdrawal:<id>:reversal`, then `…:reversal:<n>` after a
-- refusal recorded by record_withdrawal_processor_failure). record_withdrawal_transfer_reversal
-- records the reversal once, resolves the inconsistency and voids the reservation: only then is
-- the money back in the wallet.

/**
 * AFTER UPDATE trigger on withdrawals: a withdrawal that fails or is canceled after its
 * transfer was made records a transfer_unreversed inconsistency, open until the transfer is
 * reversed. Security definer: whoever fails or cancels it, the record is made.
 */
create or replace function private.withdrawal_transfer_to_reverse() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.processor_inconsistencies (
    kind, processor_object_id, amount_minor, currency, detail
  )
  values (
    'transfer_unreversed', new.processor_transfer_id, new.amount_minor, new.currency,
    'Withdrawal ' || new.id || ' is ' || new.status || ' after transfer '
    || new.processor_transfer_id || ' was made: the money is on the connected account and in '
    || 'the wallet until the transfer is reversed'
  )
  on conflict on constraint processor_inconsistencies_kind_processor_object_id_key do nothing;
  return null;
end
$$;

-- A withdrawal that fails or is canceled after its transfer has the transfer reversed.
create trigger withdrawal_transfer_to_reverse
after update of status on public.withdrawals
for each row
when (
  new.status in ('failed', 'canceled') and old.status is distinct from new.status
  and new.processor_transfer_id is not null
)
execute function private.withdrawal_transfer_to_reverse();

-- A transfer recorded after its withdrawal ended is to be reversed, as one recorded before.
create trigger withdrawal_found_transfer_to_reverse
after update of processor_transfer_id on public.withdrawals
for each row
when (
  old.processor_transfer_id is null and new.processor_transfer_id is not null
  and new.status in ('failed', 'canceled')
)
execute function private.withdrawal_transfer_to_reverse();

/**
 * The withdrawals that failed or were canceled after their transfer, whose transfer is neither
 * reversed nor left with the payee (payment_service): the amount and currency, the transfer
 * (a reversal needs no connected account), the reversal's attempt and the key to
 * send it under, with the reversal's back-off: `refusals` (recorded refusals of its
 * reversal), `retry_after` (when a refused reversal is next tried: 2^(refusals-1) hours after
 * the last refusal; null when there was none, and after the fifth) and `due` (no refusal yet,
 * or retry_after passed, and fewer than five refusals).
 */
create or replace function public.withdrawals_to_reverse()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  processor_transfer_id text,
  reversal_attempt integer,
  reversal_idempotency_key text,
  refusals integer,
  retry_after timestamptz,
  due boolean
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, w.processor_transfer_id, r.attempt,
    private.withdrawal_step_key(w.id, 'reversal', r.attempt),
    f.refusals, b.retry_after,
    f.refusals = 0 or (f.refusals < 5 and b.retry_after <= now())
  from public.withdrawals as w
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'reversal') as attempt
  ) as r
  cross join lateral (
    select count(*)::integer as refusals, max(a.created_at) as last_refused
    from public.withdrawal_processor_attempts as a
    where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'failed'
  ) as f
  cross join lateral (
    select case when f.refusals between 1 and 4
        then f.last_refused + interval '1 hour' * power(2, f.refusals - 1)
      end as retry_after
  ) as b
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is not null
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    )
    and not exists (
      select from public.processor_inconsistencies as i
      where i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
        and i.resolution is not null
    )
  order by w.updated_at, w.id
$$;

/**
 * Record the processor's reversal `reversal_id` (`trr_…`) of the transfer of withdrawal
 * `withdrawal_id` (payment_service): only for a withdrawal that failed or was canceled after
 * its transfer (PT409 otherwise); set once: the same id again changes nothing, another is
 * refused (PT409), and so is a reversal of a transfer left with the payee (its money was
 * counted as paid out). It resolves the transfer_unreversed inconsistency and voids the
 * withdrawal's reservation: the money is back on the platform, and in the wallet. Returns
 * {withdrawal_id, processor_transfer_id, reversal_id, attempt}.
 */
create or replace function public.record_withdrawal_transfer_reversal(
  withdrawal_id uuid, reversal_id text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer_reversal.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if coalesce(reversal_id, '') !~ '^trr_[A-Za-z0-9]+$' then
    raise exception 'a transfer reversal''s id is trr_…, not %', coalesce(reversal_id, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into recorded from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded';
  if found then
    if recorded.processor_object_id is distinct from reversal_id then
      raise exception 'the transfer of withdrawal % was reversed by %, not %',
      withdrawal.id, recorded.processor_object_id, reversal_id
      using errcode = 'PT409';
    end if;
  else
    if withdrawal.status not in ('failed', 'canceled')
      or withdrawal.processor_transfer_id is null then
      raise exception 'withdrawal % is % with transfer %: there is no transfer to reverse',
      withdrawal.id, withdrawal.status, coalesce(withdrawal.processor_transfer_id, 'none')
      using errcode = 'PT409';
    end if;
    if private.transfer_left_with_payee(withdrawal.id) then
      raise exception 'the transfer of withdrawal % was left with the payee by operations: its '
      'reversal % is not recorded (the money was counted as paid out)', withdrawal.id, reversal_id
      using errcode = 'PT409';
    end if;
    at_attempt := private.withdrawal_step_attempt(withdrawal.id, 'reversal');
    insert into public.withdrawal_processor_attempts as a (
      withdrawal_id, step, attempt, idempotency_key, status, processor_object_id
    )
    values (
      withdrawal.id, 'reversal', at_attempt,
      private.withdrawal_step_key(withdrawal.id, 'reversal', at_attempt), 'succeeded',
      reversal_id
    )
    returning * into recorded;
    -- The money is back on the platform: only now is it back in the wallet.
    perform private.void_reversed_withdrawal_reservation(withdrawal.id);
    update public.processor_inconsistencies as i
    set resolution = 'Reversed: transfer ' || withdrawal.processor_transfer_id || ' of withdrawal '
      || withdrawal.id || ' was reversed by ' || reversal_id
    where i.kind = 'transfer_unreversed'
      and i.processor_object_id = withdrawal.processor_transfer_id
      and i.resolution is null;
  end if;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'processor_transfer_id', withdrawal.processor_transfer_id,
    'reversal_id', recorded.processor_object_id,
    'attempt', recorded.attempt
  );
end
$$;

/**
 * Void the reservation of withdrawal `withdrawal`, failed or canceled after its transfer, once
 * the transfer's reversal is recorded (PT409 otherwise): its money is back on the platform.
 * Security definer, for record_withdrawal_transfer_reversal (payment_service may not resolve
 * ledger transfers itself).
 */
create or replace function private.void_reversed_withdrawal_reservation(withdrawal uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (
    select from public.withdrawals as w
    inner join public.withdrawal_processor_attempts as a
      on a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    where w.id = withdrawal and w.status in ('failed', 'canceled')
  ) then
    raise exception 'withdrawal % has no recorded reversal of its transfer: its money stays '
    'reserved', withdrawal
    using errcode = 'PT409';
  end if;
  perform private.ledger_resolve(private.withdrawal_reservation(withdrawal), false);
end
$$;

-- A transfer that cannot be reversed can be left with the payee, by an admin, in writing.
--
-- When the reversal cannot be made (the connected account's balance was paid out by other
-- means, the account is closed), the reservation would otherwise stay pending for ever, the
-- `transfer_unreversed` inconsistency open, and the reversal retried on every run. Words alone
-- never settle it, so that the books and the inconsistencies say the same thing:
--   * public.leave_transfer_with_payee(withdrawal_id, resolution) (an admin, aal2, written)
--     records the decision that the transfer stays with the payee: the money left the
--     platform with it, so the withdrawal's reservation is posted (as a paid withdrawal's
--     is), and the transfer_unreversed inconsistency is resolved with the admin's words,
--     in one transaction;
--   * that resolved inconsistency, with no reversal recorded, is the record of the decision:
--     withdrawals_to_reverse() does not list the withdrawal, and
--     record_withdrawal_transfer_reversal refuses a reversal recorded after it (PT409): the
--     money it would return was counted as paid out (`payguard reconcile --stripe` reports a
--     transfer Stripe reversed after it was left with the payee);
--   * resolve_processor_inconsistency refuses a transfer_unreversed inconsistency (PT409).

/** True when the transfer of withdrawal `withdrawal` was left with the payee by an admin. */
create or replace function private.transfer_left_with_payee(withdrawal uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.withdrawals as w
    inner join public.processor_inconsistencies as i
      on i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
    where w.id = withdrawal and i.resolution is not null
      and not exists (
        select from public.withdrawal_processor_attempts as a
        where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
      )
  )
$$;

/**
 * Leave the transfer of withdrawal `withdrawal_id`, failed or canceled after its transfer was
 * made and not reversed, with the payee (an admin at aal2, with a written resolution of 10 to
 * 1,900 characters: PT403, PT422): the withdrawal's reservation is posted (its money left the
 * platform with the transfer) and the transfer_unreversed inconsistency is resolved as
 * "Left with the payee: <resolution>". PT404 for an unknown withdrawal; PT409 for one with no
 * transfer to leave, one whose transfer was reversed, and one already settled. Returns
 * {withdrawal_id, processor_transfer_id, inconsistency_id, resolved_at}. Security definer:
 * admins neither resolve ledger transfers nor write processor_inconsistencies.
 */
create or replace function private.leave_transfer_with_payee(withdrawal_id uuid, resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  reversal text;
  unreversed public.processor_inconsistencies;
begin
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'leaving a transfer with the payee needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 1900) then
    raise exception 'leaving the transfer of withdrawal % with the payee needs a written '
    'resolution of 10 to 1900 characters', withdrawal_id
    using errcode = 'PT422';
  end if;
  select * into withdrawal from public.withdrawals as w
  where w.id = leave_transfer_with_payee.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is null
  then
    raise exception 'withdrawal % is % with transfer %: there is no unreversed transfer to '
    'leave with the payee', withdrawal.id, withdrawal.status,
    coalesce(withdrawal.processor_transfer_id, 'none')
    using errcode = 'PT409';
  end if;
  select a.processor_object_id into reversal from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded';
  if found then
    raise exception 'the transfer of withdrawal % was reversed by %: its money is back on the '
    'platform', withdrawal.id, reversal
    using errcode = 'PT409';
  end if;
  select * into unreversed from public.processor_inconsistencies as i
  where i.kind = 'transfer_unreversed' and i.processor_object_id = withdrawal.processor_transfer_id
  for update;
  if not found then
    raise exception 'withdrawal % has no transfer_unreversed inconsistency for %',
    withdrawal.id, withdrawal.processor_transfer_id
    using errcode = 'PT409';
  end if;
  if unreversed.resolution is not null then
    raise exception 'the transfer of withdrawal % was settled at %: %', withdrawal.id,
    unreversed.resolved_at, left(unreversed.resolution, 200)
    using errcode = 'PT409';
  end if;
  -- The money left the platform with the transfer: the reservation is posted, as a paid
  -- withdrawal's is.
  perform private.ledger_resolve(private.withdrawal_reservation(withdrawal.id), true);
  update public.processor_inconsistencies as i
  set resolution = 'Left with the payee: ' || leave_transfer_with_payee.resolution
  where i.id = unreversed.id
  returning * into unreversed;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'processor_transfer_id', withdrawal.processor_transfer_id,
    'inconsistency_id', unreversed.id,
    'resolved_at', unreversed.resolved_at
  );
end
$$;

/** private.leave_transfer_with_payee, with a refusal recorded and answered. */
create or replace function public.leave_transfer_with_payee(withdrawal_id uuid, resolution text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.leave_transfer_with_payee(withdrawal_id, resolution);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'leave_transfer_with_payee', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id, 'resolution', resolution),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

-- Section: privileges

revoke execute on function apply_stripe_event(jsonb) from service_role;

revoke execute on function begin_funding_attempt(uuid, uuid) from service_role;

revoke execute on function begin_onboarding_payout_account(text) from service_role;

revoke execute on function begin_saving_payment_method() from service_role;

revoke execute on function begin_withdrawal_step(uuid, text) from service_role;

revoke execute on function inconsistencies_to_recover() from service_role;

revoke execute on function leave_transfer_with_payee(uuid, text) from service_role;

revoke execute on function record_funding_failure(uuid, integer, text, text) from service_role;

revoke execute on function record_payment_intent(uuid, integer, text) from service_role;

revoke execute on function record_payout_account_refusal(uuid, text, text, text) from service_role;

revoke execute on function record_processor_inconsistency(
  text, text, uuid, bigint, character, text, text
) from service_role;

revoke execute on function record_refund_refusal(uuid, text, text, text) from service_role;

revoke execute on function record_refund_sent(uuid, text) from service_role;

revoke execute on function record_withdrawal_payout(uuid, text) from service_role;

revoke execute on function record_withdrawal_processor_failure(
  uuid, text, text, text, text
) from service_role;

revoke execute on function record_withdrawal_transfer(uuid, text) from service_role;

revoke execute on function record_withdrawal_transfer_not_made(uuid, text) from service_role;

revoke execute on function record_withdrawal_transfer_reversal(uuid, text) from service_role;

revoke execute on function recover_processor_inconsistency(uuid) from service_role;

revoke execute on function refunds_to_send() from service_role;

revoke execute on function resolve_processor_inconsistency(uuid, text) from service_role;

revoke execute on function settle_webhook_event(text, text) from service_role;

revoke execute on function withdrawals_to_pay_out() from service_role;

revoke execute on function withdrawals_to_reverse() from service_role;

revoke execute on function withdrawals_with_unanswered_transfer() from service_role;

grant execute on function apply_stripe_event(jsonb) to payment_service;

grant execute on function begin_funding_attempt(uuid, uuid) to authenticated;

grant execute on function begin_onboarding_payout_account(text) to authenticated;

grant execute on function begin_saving_payment_method() to authenticated;

grant execute on function begin_withdrawal_step(uuid, text) to payment_service;

grant execute on function inconsistencies_to_recover() to payment_service;

grant execute on function leave_transfer_with_payee(uuid, text) to admin;

grant execute on function private.account_state_rank(text) to payment_service;

grant execute on function private.apply_account_updated(jsonb) to payment_service;

grant execute on function private.apply_charge_dispute_closed(jsonb) to payment_service;

grant execute on function private.apply_charge_dispute_created(jsonb) to payment_service;

grant execute on function private.apply_charge_refunded(jsonb) to payment_service;

grant execute on function private.apply_payment_intent_failure(jsonb) to payment_service;

grant execute on function private.apply_payment_intent_succeeded(jsonb) to payment_service;

grant execute on function private.apply_payout_event(jsonb) to payment_service;

grant execute on function private.apply_stripe_event_effects(jsonb) to payment_service;

grant execute on function private.begin_funding_attempt(uuid, uuid) to authenticated;

grant execute on function private.begin_onboarding_payout_account(text) to authenticated;

grant execute on function private.begin_saving_payment_method() to authenticated;

grant execute on function private.confirm_refund_obligation(
  uuid, text, bigint, character, text
) to payment_service;

grant execute on function private.event_amount(jsonb, text) to payment_service;

grant execute on function private.event_currency(jsonb) to payment_service;

grant execute on function private.event_detail_without_card_numbers(text) to payment_service;

grant execute on function private.event_funding_attempt(uuid, text) to payment_service;

grant execute on function private.event_milestone_payment(jsonb) to payment_service;

grant execute on function private.event_without_card_data(jsonb) to payment_service;

grant execute on function private.leave_transfer_with_payee(uuid, text) to admin;

grant execute on function private.payout_method_payable(uuid) to payment_service;

grant execute on function private.processor_took_money_back(uuid, text) to admin;

grant execute on function private.processor_took_money_back(uuid, text) to authenticated;

grant execute on function private.processor_took_money_back(uuid, text) to escrow_service;

grant execute on function private.processor_took_money_back(uuid, text) to payment_service;

grant execute on function private.refused_chargeback_events(text, text, text) to payment_service;

grant execute on function private.refused_event_inconsistency_kind(text, text) to payment_service;

grant execute on function private.refuses_event(text) to payment_service;

grant execute on function private.resolve_chargeback_inconsistency(
  text, text, text
) to payment_service;

grant execute on function private.resolve_processor_inconsistency(uuid, text) to admin;

grant execute on function private.resolve_unrecorded_withdrawal_object(
  text, text, uuid
) to payment_service;

grant execute on function private.settle_webhook_event(text, text) to admin;

grant execute on function private.settled_by_funding(text) to payment_service;

grant execute on function private.transfer_left_with_payee(uuid) to admin;

grant execute on function private.transfer_left_with_payee(uuid) to payment_service;

grant execute on function private.void_reversed_withdrawal_reservation(uuid) to payment_service;

grant execute on function private.void_untransferred_withdrawal_reservation(
  uuid
) to payment_service;

grant execute on function private.withdrawal_step_attempt(uuid, text) to payment_service;

grant execute on function private.withdrawal_step_key(uuid, text, integer) to payment_service;

grant execute on function private.withdrawal_transfer_unanswered(uuid) to admin;

grant execute on function private.withdrawal_transfer_unanswered(uuid) to payment_service;

grant execute on function record_funding_failure(uuid, integer, text, text) to payment_service;

grant execute on function record_payment_intent(uuid, integer, text) to payment_service;

grant execute on function record_payout_account_refusal(uuid, text, text, text) to payment_service;

grant execute on function record_processor_account(uuid, text) to payment_service;

grant execute on function record_processor_inconsistency(
  text, text, uuid, bigint, character, text, text
) to payment_service;

grant execute on function record_refund_refusal(uuid, text, text, text) to payment_service;

grant execute on function record_refund_sent(uuid, text) to payment_service;

grant execute on function record_withdrawal_payout(uuid, text) to payment_service;

grant execute on function record_withdrawal_processor_failure(
  uuid, text, text, text, text
) to payment_service;

grant execute on function record_withdrawal_transfer(uuid, text) to payment_service;

grant execute on function record_withdrawal_transfer_not_made(uuid, text) to payment_service;

grant execute on function record_withdrawal_transfer_reversal(uuid, text) to payment_service;

grant execute on function recover_processor_inconsistency(uuid) to payment_service;

grant execute on function refunds_to_send() to payment_service;

grant execute on function resolve_processor_inconsistency(uuid, text) to admin;

grant execute on function settle_webhook_event(text, text) to admin;

grant execute on function withdrawals_to_pay_out() to payment_service;

grant execute on function withdrawals_to_reverse() to payment_service;

grant execute on function withdrawals_with_unanswered_transfer() to payment_service;
