-- The border's records keep a processor's or the database's message through
-- private.recordable_message: a message the card-data guard would refuse (an error's text that
-- joins digits to an id, which then reads as a card number) is kept as "[removed: it held card
-- data]", and the record of a refusal or an inconsistency is never lost to its wording.
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
    when private.holds_card_number(left(message, max_chars)) then '[removed: it held card data]'
    else left(message, max_chars)
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
