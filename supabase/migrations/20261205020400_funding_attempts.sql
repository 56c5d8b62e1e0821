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
  processor_payment_method_id text not null
  check (processor_payment_method_id ~ '^pm_[A-Za-z0-9]{6,}$'),
  processor_customer_id text not null check (processor_customer_id ~ '^cus_[A-Za-z0-9]{6,}$'),
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
  unique (milestone_payment_id, attempt)
);

create index funding_attempts_payment_method_id_idx
on public.funding_attempts (payment_method_id);

-- At most one open attempt per payment (without a partial index: see
-- 20261126084600_unique_live_rows_without_partial_indexes.sql).
create unique index funding_attempts_one_open_key
on public.funding_attempts (
  milestone_payment_id, (case when status <> 'open' then id end)
) nulls not distinct;

create trigger keep_row_timestamps
before insert or update on public.funding_attempts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.funding_attempts
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('public.funding_attempts');

-- An attempt's payment method and customer are processor tokens: redacted like its method's.
create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array['processor_payment_method_id', 'processor_customer_id']
    when 'payout_methods' then array['processor_account_id', 'processor_external_account_id']
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array['processor_customer_id']
    when 'funding_attempts' then
      array['processor_payment_method_id', 'processor_customer_id']
    else array[]::text []
  end;
end
$$;

create trigger audit_trail
after insert or update or delete on public.funding_attempts
for each row execute function private.capture_audit_row('id');
select private.renew_audit_trail('public.funding_attempts');

create trigger refuse_unaudited_truncate
before truncate on public.funding_attempts
for each statement execute function private.refuse_unaudited_truncate();

/**
 * An attempt's facts are set once: what it charges never changes, its PaymentIntent id is
 * recorded once, and it ends once (open to failed or succeeded; a failed one may still
 * succeed), with a failure code only when it fails. Attempts are never deleted.
 */
create function private.check_funding_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    raise exception 'funding attempt % is a record of a charge: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.milestone_payment_id, new.attempt, new.processor_payment_method_id,
    new.processor_customer_id, new.amount_minor, new.currency, new.idempotency_key
  ) is distinct from (
    old.id, old.milestone_payment_id, old.attempt, old.processor_payment_method_id,
    old.processor_customer_id, old.amount_minor, old.currency, old.idempotency_key
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

revoke all on function private.check_funding_attempt() from public;

create trigger check_funding_attempt
before update or delete on public.funding_attempts
for each row execute function private.check_funding_attempt();

/**
 * Open (or find) the attempt that charges milestone payment `milestone_payment_id` with the
 * caller's payment method `payment_method_id`. Called as the payer, with the payer's claims:
 * the payment must be the caller's own to pay (PT404 otherwise, the same answer as for an id
 * that does not exist), pending or failed (PT409), and the payment method the caller's own
 * (PT404); from the MFA threshold on the session needs aal2 (PT403). An open attempt is
 * returned as it is, with its idempotency key, so that a retried request never charges twice
 * (the payment method of a retry must be the open attempt's, PT409 otherwise). A new attempt
 * is numbered after the last one, which must have failed. Returns {attempt, idempotency_key,
 * amount_minor, currency, customer_id, payment_method_id (the pm_…), payment_intent_id (null
 * until recorded), milestone_payment_id, status}.
 */
create function public.begin_funding_attempt(
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
begin
  if caller is null or current_setting('role', true) is distinct from 'authenticated' then
    raise exception 'a funding attempt is opened by the payer, signed in'
    using errcode = '42501';
  end if;
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
  if found and current_attempt.status = 'open' then
    if current_attempt.payment_method_id is distinct from method.id then
      raise exception 'milestone payment % is being charged to another payment method (attempt %)',
      payment.id, current_attempt.attempt
      using errcode = 'PT409', hint = 'retry with the same payment method, or wait for it to fail';
    end if;
  elsif found and current_attempt.status = 'succeeded' then
    raise exception 'milestone payment % was already charged (attempt %)',
    payment.id, current_attempt.attempt
    using errcode = 'PT409';
  else
    perform private.enforce_rate_limit('milestone_payments.fund');
    insert into public.funding_attempts (
      milestone_payment_id, attempt, payment_method_id, processor_payment_method_id,
      processor_customer_id, amount_minor, currency, idempotency_key
    )
    values (
      payment.id, coalesce(current_attempt.attempt, 0) + 1, method.id,
      method.processor_payment_method_id, method.processor_customer_id, payment.amount_minor,
      payment.currency,
      'milestone_payment:' || payment.id || ':attempt:' || (coalesce(current_attempt.attempt, 0) + 1)
    )
    returning * into current_attempt;
  end if;
  return jsonb_build_object(
    'milestone_payment_id', current_attempt.milestone_payment_id,
    'attempt', current_attempt.attempt,
    'idempotency_key', current_attempt.idempotency_key,
    'amount_minor', current_attempt.amount_minor,
    'currency', current_attempt.currency,
    'customer_id', current_attempt.processor_customer_id,
    'payment_method_id', current_attempt.processor_payment_method_id,
    'payment_intent_id', current_attempt.processor_payment_intent_id,
    'status', current_attempt.status
  );
end
$$;

revoke all on function public.begin_funding_attempt(uuid, uuid) from public, anon, service_role;
grant execute on function public.begin_funding_attempt(uuid, uuid) to authenticated;

insert into private.rate_limit_rules (operation, rate_level)
values ('milestone_payments.fund', 'medium');

/**
 * Record the PaymentIntent that the processor created for attempt `attempt` of milestone
 * payment `milestone_payment_id` (payment_service): set once, the same value again changes
 * nothing, another one is refused (PT409); unknown attempt PT404. Returns the attempt.
 */
create function public.record_payment_intent(
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

revoke all on function public.record_payment_intent(uuid, integer, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_payment_intent(uuid, integer, text) to payment_service;

/**
 * Record that the processor declined or canceled attempt `attempt` of milestone payment
 * `milestone_payment_id` (payment_service), with its failure code and message: the attempt
 * fails and a pending payment becomes failed (its payer is told, and may try again). The
 * webhook's payment_intent.payment_failed may report the same failure: whichever comes
 * second changes nothing. A succeeded attempt is not failed (PT409). Returns the attempt.
 */
create function public.record_funding_failure(
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
      failure_message = left(message, 500)
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

revoke all on function public.record_funding_failure(uuid, integer, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_funding_failure(uuid, integer, text, text)
to payment_service;
