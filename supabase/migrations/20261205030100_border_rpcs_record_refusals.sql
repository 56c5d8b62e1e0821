-- The border's RPCs that users and staff call record and count their refusals like every
-- other RPC.
--
-- begin_funding_attempt (the payer, through the milestone-payments function, as PostgREST
-- would) and resolve_processor_inconsistency (an admin) raised their refusals: the request
-- was rolled back whole, so a refused call left no audit row, and a refused funding attempt
-- did not count towards the payer's velocity limit (a payer probing other users' payments
-- was never answered 429). They now follow the RPC wrapper pattern of
-- 20261126080500_rpc_refused_calls.sql and 20261204231200_refused_calls_count_towards_
-- rate_limits.sql: the implementation moves to `private` (same body, same grants), and the
-- public function calls it and, for a refusal, records it through private.refused_call (an
-- audit row with success = false, the call counted against the caller's limit, 429 over it
-- with one summarised alert) and answers it with response.status and PostgREST's error body.
--
-- Every call of begin_funding_attempt now counts towards milestone_payments.fund, a retry
-- that finds the open attempt too, and the count is taken first, before the payment is read:
-- over the limit the answer is the same for any id. Authorization still comes before
-- anything that reads the payment for the caller: another user's payment and one that does
-- not exist get the same answer (PT404), and so do another user's payment method and a
-- missing one. The other public functions of the border are executable by payment_service
-- only, which has no velocity limit; they keep raising, so that the service's transaction
-- (the webhook's, the payouts') is rolled back whole.

alter function public.begin_funding_attempt(uuid, uuid) set schema private;
alter function public.resolve_processor_inconsistency(uuid, text) set schema private;

update private.rate_limit_rules
set rpc = 'begin_funding_attempt'
where operation = 'milestone_payments.fund';

/**
 * Open (or find) the attempt that charges milestone payment `milestone_payment_id` with the
 * caller's payment method `payment_method_id`, as in 20261205020400_funding_attempts.sql,
 * every call counted against the caller's milestone_payments.fund limit first. Raises its
 * refusals; public.begin_funding_attempt records and answers them.
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

/** private.begin_funding_attempt, with a refusal recorded, counted and answered. */
create function public.begin_funding_attempt(
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

revoke all on function public.begin_funding_attempt(uuid, uuid) from public, anon, service_role;
grant execute on function public.begin_funding_attempt(uuid, uuid) to authenticated;

/** private.resolve_processor_inconsistency, with a refusal recorded and answered. */
create function public.resolve_processor_inconsistency(inconsistency_id uuid, resolution text)
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

revoke all on function public.resolve_processor_inconsistency(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.resolve_processor_inconsistency(uuid, text) to admin;

/**
 * The most characters that a refused call of `operation` keeps of its argument `argument`,
 * as in 20261204233000_refused_approval_reason_bound.sql, and the resolution of a processor
 * inconsistency: the 2000 characters its column holds.
 */
create or replace function private.refused_call_argument_limit(operation text, argument text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case operation || '.' || argument
    when 'open_dispute.reason' then 5000
    when 'resolve_dispute.resolution' then 5000
    when 'approve_withdrawal.reason' then 2000
    when 'resolve_processor_inconsistency.resolution' then 2000
    when 'fail_withdrawal.failure_reason' then 500
    when 'fund_milestone_payment.processor_payment_intent_id' then 255
    when 'complete_withdrawal.processor_payout_id' then 255
    else 255
  end;
end
$$;
