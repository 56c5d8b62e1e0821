-- The border's RPCs that a user calls no longer hand a processor token back: saving a card says
-- whether a customer is recorded, not which; a funding attempt names its payment method by its
-- row; onboarding names the connected account by its row. The functions read the tokens as
-- payment_service (docs/token-envelopes.md).

set local check_function_bodies = off;

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
      processor_customer_id, amount_minor, currency, idempotency_key,
      processor_payment_method_id_lookup, processor_customer_id_lookup
    )
    values (
      payment.id, coalesce(current_attempt.attempt, 0) + 1, method.id,
      method.processor_payment_method_id, method.processor_customer_id, payment.amount_minor,
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
  order by a.created_at, a.processor_account_id
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
