-- An open funding attempt whose PaymentIntent Stripe will never complete no longer blocks its
-- payment.
--
-- An attempt with a PaymentIntent recorded was waited for until Stripe said it failed: another
-- payment method was refused (PT409, "complete that charge, or wait for it to fail"). An
-- intent left in requires_action (3-D Secure the payer never completed, e.g. because she
-- deleted that card) never fails by itself, so the payment could not be funded with any card.
--
-- Now a request with another payment method (or after the attempt's own was deleted) gets the
-- open attempt back, unchanged, with `cancel_to_replace` true, instead of the refusal. The
-- milestone-payments function then cancels that attempt's PaymentIntent at Stripe first;
-- only once Stripe answers that it is canceled does it record the attempt as failed
-- (record_funding_failure, 'canceled') and ask again, which opens the next attempt under the
-- next key. If Stripe will not cancel it (it succeeded, or is processing), nothing else is
-- charged. So there are never two live PaymentIntents for one payment, and the database
-- still opens a new attempt only after the previous one failed. Should a success of the old
-- intent reach the database all the same, it names an attempt that is not the payment's
-- current one (or finds the payment funded), and is refused and reported as a
-- charge_refused inconsistency whose recovery is a refund, as before.

/**
 * Open (or find) the attempt that charges milestone payment `milestone_payment_id` with the
 * caller's payment method `payment_method_id`, as in 20261205050100_abandoned_funding_
 * attempts.sql, every call counted against the caller's milestone_payments.fund limit first.
 * An open attempt of another payment method (or of a deleted one) that recorded no
 * PaymentIntent and was opened more than a minute ago is abandoned, and the next attempt
 * opened; one that recorded a PaymentIntent is answered with `cancel_to_replace` true: its
 * intent must be canceled at the processor (and the attempt recorded as failed) before another
 * payment method is charged. Raises its refusals; public.begin_funding_attempt records and
 * answers them.
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
    'status', current_attempt.status,
    'cancel_to_replace', replace_first
  );
end
$$;
