-- Contract: no processor token is stored in plain text any more. The plain-text columns of
-- processor_customers, payment_methods, processor_accounts, payout_methods and
-- funding_attempts go; each token is kept sealed (payment_service reads it) and found by its
-- lookup (docs/token-envelopes.md). Rows are matched by lookup: a payment method's customer,
-- a payout method's connected account, account.updated and payout events (the stripe-webhook
-- function hands events over with each token replaced by its lookup). processor_accounts is
-- keyed by its row id. The payouts RPCs hand payment_service each account as its row and its
-- sealed token.
--
-- A database with rows that hold a token in plain text alone (written before tokens were
-- sealed) is refused, and nothing changes: run `payguard keys rotate` with the migrations
-- before this one applied, then apply this one.

set local check_function_bodies = off;

do $$
declare
  unsealed bigint;
begin
  select
    (select count(*) from public.processor_customers where processor_customer_id_lookup is null)
    + (
      select count(*) from public.payment_methods
      where processor_payment_method_id_sealed is null or processor_customer_id_lookup is null
    )
    + (select count(*) from public.processor_accounts where processor_account_id_lookup is null)
    + (
      select count(*) from public.payout_methods
      where processor_external_account_id_sealed is null or processor_account_id_lookup is null
    )
    + (
      select count(*) from public.funding_attempts
      where processor_payment_method_id_lookup is null or processor_customer_id_lookup is null
    )
  into unsealed;
  if unsealed > 0 then
    raise exception '% rows still hold a processor token in plain text alone: run '
    '`payguard keys rotate` (it seals them), then deploy again', unsealed
    using errcode = 'PT409',
    hint = 'this migration drops the plain-text columns once every token is sealed';
  end if;
end
$$;

-- The triggers that name a plain-text column go with it, and come back naming the lookup.
drop trigger tie_payment_method_to_customer on public.payment_methods;
drop trigger tie_payout_method_to_account on public.payout_methods;

-- The payouts RPCs hand back other columns; the onboarding record takes a lookup.
drop function public.withdrawals_to_pay_out();
drop function public.withdrawals_with_unanswered_transfer();
drop function public.withdrawals_to_reverse();
drop function public.record_processor_account(uuid, text);

alter table public.processor_customers
drop column processor_customer_id,
drop constraint processor_customers_sealed_with_lookup,
alter column processor_customer_id_lookup set not null;

alter table public.payment_methods
drop column processor_payment_method_id,
drop column processor_customer_id,
drop constraint payment_methods_sealed_with_lookup,
alter column processor_payment_method_id_sealed set not null,
alter column processor_payment_method_id_lookup set not null,
alter column processor_customer_id_lookup set not null;

alter table public.processor_accounts
drop constraint processor_accounts_pkey,
drop column processor_account_id,
drop constraint processor_accounts_sealed_with_lookup,
alter column processor_account_id_lookup set not null;

alter table public.processor_accounts
drop constraint processor_accounts_id_key,
add constraint processor_accounts_pkey primary key (id);

alter table public.payout_methods
drop column processor_account_id,
drop column processor_external_account_id,
drop constraint payout_methods_sealed_with_lookup,
alter column processor_external_account_id_sealed set not null,
alter column processor_external_account_id_lookup set not null,
alter column processor_account_id_lookup set not null;

alter table public.funding_attempts
drop column processor_payment_method_id,
drop column processor_customer_id,
alter column processor_payment_method_id_lookup set not null,
alter column processor_customer_id_lookup set not null;

/** A recorded customer never changes: a user keeps the customer their cards are saved under. */
create or replace function private.keep_processor_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Only its sealed value changes: sealed once known, re-sealed under a newer key.
  if (to_jsonb(new) - 'processor_customer_id_sealed' - 'updated_at')
    is distinct from (to_jsonb(old) - 'processor_customer_id_sealed' - 'updated_at')
  then
    raise exception 'the processor customer of user % is recorded once and never changes',
    old.user_id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

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

create trigger tie_payment_method_to_customer
before insert or update of user_id, processor_customer_id_lookup on public.payment_methods
for each row execute function private.check_payment_method_customer();

/**
 * An attempt's facts are set once: what it charges never changes, its PaymentIntent id is
 * recorded once, and it ends once (open to failed or succeeded; a failed one may still
 * succeed), with a failure code only when it fails. Attempts are never deleted.
 */
create or replace function private.check_funding_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    raise exception 'funding attempt % is a record of a charge: it is never deleted', old.id
    using errcode = 'PT409';
  end if;
  if (
    new.id, new.milestone_payment_id, new.attempt, new.processor_payment_method_id_lookup,
    new.processor_customer_id_lookup, new.amount_minor, new.currency, new.idempotency_key
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
      left(coalesce(
        nullif(object ->> 'failure_message', ''), nullif(object ->> 'failure_code', ''),
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

create trigger tie_payout_method_to_account
before insert or update of user_id, processor_account_id_lookup on public.payout_methods
for each row execute function private.check_payout_method_account();

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
 * needs (payment_service): the amount and currency, the payout method, its connected account
 * (its row and its sealed token, which the payouts function opens; the payout goes to the
 * account's external account at the processor), the transfer id if one was already
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
  last_failure_code text
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
    )
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'transfer') as attempt
  ) as t
  cross join lateral (select private.withdrawal_step_attempt(w.id, 'payout') as attempt) as p
  where w.status = 'approved' and w.processor_payout_id is null
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
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

/**
 * The withdrawals that failed or were canceled after their transfer, whose transfer is neither
 * reversed nor left with the payee (payment_service): the amount and currency, the connected
 * account (its row and its sealed token), the transfer, the reversal's attempt and the key to
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
  account_id uuid,
  account_sealed jsonb,
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
    w.id, w.status::text, w.amount_minor, w.currency, account.id,
    account.processor_account_id_sealed, w.processor_transfer_id, r.attempt,
    private.withdrawal_step_key(w.id, 'reversal', r.attempt),
    f.refusals, b.retry_after,
    f.refusals = 0 or (f.refusals < 5 and b.retry_after <= now())
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
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
 * The columns the audit trail keeps out of its rows: processor tokens, in both forms they are
 * stored in (sealed, and their lookups: payment_methods.sql), and whole payloads.
 */
create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array[
      'processor_payment_method_id_sealed', 'processor_payment_method_id_lookup',
      'processor_customer_id_lookup'
    ]
    when 'payout_methods' then array[
      'processor_external_account_id_sealed', 'processor_external_account_id_lookup',
      'processor_account_id_lookup'
    ]
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array[
      'processor_customer_id_sealed', 'processor_customer_id_lookup'
    ]
    when 'processor_accounts' then array[
      'processor_account_id_sealed', 'processor_account_id_lookup'
    ]
    when 'funding_attempts' then array[
      'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
    ]
    else array[]::text []
  end;
end
$$;

revoke execute on function public.withdrawals_to_pay_out() from service_role;

revoke execute on function public.withdrawals_to_reverse() from service_role;

revoke execute on function public.withdrawals_with_unanswered_transfer() from service_role;

grant execute on function public.record_processor_account(uuid, text) to payment_service;

grant execute on function public.withdrawals_to_pay_out() to payment_service;

grant execute on function public.withdrawals_to_reverse() to payment_service;

grant execute on function public.withdrawals_with_unanswered_transfer() to payment_service;
