-- An open funding attempt that recorded no PaymentIntent no longer blocks its payment.
--
-- At most one attempt per payment is open, and a request with another payment method than
-- the open attempt's was refused (PT409 "is being charged to another payment method") until
-- that attempt failed. An attempt fails by Stripe's answer about its PaymentIntent; one that
-- never got one (its card deleted, so the payer cannot retry with it; Stripe refusing the
-- creation with a non-card error, replayed under the same idempotency key for 24 hours; the
-- function stopped between the attempt and Stripe's answer) never failed, and the payment
-- could not be funded with any card.
--
-- Now begin_funding_attempt abandons such an attempt (failed, failure_code 'abandoned',
-- saying why) when the payer asks with another payment method (its own was deleted, or she
-- chose another), and opens the next attempt, with the next idempotency key. It does so only
-- for an attempt with no PaymentIntent recorded and opened more than a minute ago: the
-- milestone-payments function gives up on Stripe after 20 seconds, so no request creating
-- its intent can still be in flight. The abandoned attempt's key is never used again (the
-- function charges only the open attempt's key). An intent Stripe created for it all the
-- same (its answer lost) and that succeeds late is handled by the existing rules: its
-- payment_intent.succeeded names an attempt that is not the payment's current one, or the
-- payment is funded already, and is refused and recorded as a processor inconsistency, whose
-- recovery refunds it. An open attempt with a PaymentIntent recorded is still waited for (it
-- may be completed by 3-D Secure): a request with another method is refused as before.

/**
 * Open (or find) the attempt that charges milestone payment `milestone_payment_id` with the
 * caller's payment method `payment_method_id`, as in 20261205030100_border_rpcs_record_
 * refusals.sql, every call counted against the caller's milestone_payments.fund limit first.
 * An open attempt of another payment method (or of a deleted one) that recorded no
 * PaymentIntent and was opened more than a minute ago is abandoned, and the next attempt
 * opened. Raises its refusals; public.begin_funding_attempt records and answers them.
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
      raise exception 'milestone payment % is being charged to another payment method (attempt %)',
      payment.id, current_attempt.attempt
      using errcode = 'PT409', hint = case
        when current_attempt.processor_payment_intent_id is null
          then 'retry with the same payment method, or with another one in a minute'
        else 'complete that charge, or wait for it to fail'
      end;
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
