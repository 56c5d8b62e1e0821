-- Saving a payment method counts towards the caller's limit before Stripe is asked anything.
--
-- The payment-methods function asked Stripe for the card (and created the customer) before
-- any statement that counted towards a limit: the payment_methods.insert limit counts only
-- users' inserts, and the row is inserted by payment_service. A user could send any number
-- of requests, each a call to Stripe, whose rate limit is the whole account's: one user
-- could slow every payer down. Now the function's first database call is
-- public.begin_saving_payment_method, in a transaction of its own that commits before Stripe
-- is called: every request counts towards payment_methods.save (Medium, as the insert it
-- replaces), a retry and a request that Stripe then refuses too, and over the limit the
-- answer is 429 with nothing asked of Stripe. It follows the RPC wrapper pattern of
-- 20261205030100_border_rpcs_record_refusals.sql: a refusal (no aal2, over the limit) is
-- recorded, counted and answered through response.status. The funding of a milestone
-- payment already counts first: begin_funding_attempt counts every call towards
-- milestone_payments.fund before it reads anything, and commits before Stripe is called.

insert into private.rate_limit_rules (operation, rate_level, rpc)
values ('payment_methods.save', 'medium', 'begin_saving_payment_method');

/**
 * Allow the signed-in caller to save a card: the call counted against payment_methods.save
 * first, then aal2 required (as the payment_methods insert requires it). Returns the
 * caller's recorded Stripe customer (`customer_id`, null before the first card). Raises its
 * refusals; public.begin_saving_payment_method records and answers them.
 */
create function private.begin_saving_payment_method() returns jsonb
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
  return jsonb_build_object(
    'customer_id',
    (
      select c.processor_customer_id from public.processor_customers as c
      where c.user_id = caller
    )
  );
end
$$;

revoke all on function private.begin_saving_payment_method() from public;
grant execute on function private.begin_saving_payment_method() to authenticated;

/** private.begin_saving_payment_method, with a refusal recorded, counted and answered. */
create function public.begin_saving_payment_method() returns jsonb
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

revoke all on function public.begin_saving_payment_method() from public, anon, service_role;
grant execute on function public.begin_saving_payment_method() to authenticated;
