-- A contractor's connected account is made by the payout-accounts function, and the database
-- decides first.
--
-- Until now only SQL recorded a connected account (public.record_processor_account, by
-- payment_service): nothing made one at Stripe for a contractor. The payout-accounts Edge
-- Function does, and its first database call is public.begin_onboarding_payout_account, in a
-- transaction of its own that commits before Stripe is called (as begin_saving_payment_method
-- for payment-methods, 20261205050000):
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

insert into private.rate_limit_rules (operation, rate_level, rpc)
values ('processor_accounts.onboard', 'medium', 'begin_onboarding_payout_account');

insert into private.settings (key, value, description)
values (
  'connected_account_default_country', '"US"',
  'The country (ISO 3166-1 alpha-2) of a contractor''s connected account when the request '
  || 'names none.'
);

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

create trigger keep_row_timestamps
before insert or update on private.payout_account_onboardings
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on private.payout_account_onboardings
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('private.payout_account_onboardings');

revoke all on table private.payout_account_onboardings from public;

/** The idempotency key of `user_id`'s attempt `attempt` at making their connected account. */
create function private.payout_account_key(user_id uuid, attempt integer) returns text
language sql
immutable
set search_path = ''
as $$
  select 'user:' || user_id::text || ':connected_account'
    || case when attempt > 1 then ':' || attempt::text else '' end
$$;

revoke all on function private.payout_account_key(uuid, integer) from public;

/**
 * Allow the signed-in caller to onboard for payouts: the call counted against
 * processor_accounts.onboard first, then aal2 and the contractor role required. Answers the
 * caller's recorded connected account (`processor_account_id`, `verification_status`), or,
 * when there is none, the account to make: `idempotency_key`, `attempt`, and the `country`
 * and `email` pinned for the attempt (`requested_country`, else the setting
 * connected_account_default_country; the email of the user's profile). Raises its refusals;
 * public.begin_onboarding_payout_account records and answers them.
 */
create function private.begin_onboarding_payout_account(requested_country text)
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
    return jsonb_build_object(
      'processor_account_id', account.processor_account_id,
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
    'processor_account_id', null,
    'verification_status', null,
    'attempt', onboarding.attempt,
    'idempotency_key', private.payout_account_key(caller, onboarding.attempt),
    'country', onboarding.country,
    'email', onboarding.email
  );
end
$$;

revoke all on function private.begin_onboarding_payout_account(text) from public;
grant execute on function private.begin_onboarding_payout_account(text) to authenticated;

/** private.begin_onboarding_payout_account, with a refusal recorded, counted and answered. */
create function public.begin_onboarding_payout_account(country text default null)
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

revoke all on function public.begin_onboarding_payout_account(text)
from public, anon, service_role;
grant execute on function public.begin_onboarding_payout_account(text) to authenticated;

/**
 * Records that the processor refused to make `user_id`'s connected account under
 * `idempotency_key` (payment_service, for an answer the processor gave; never for a request
 * that got no answer, whose retry keeps its key). The key must be the user's current one
 * (PT409); the same refusal again changes nothing. The next request opens the next attempt,
 * with its own parameters. Answers {user_id, attempt, failure_code, next_idempotency_key}.
 */
create function public.record_payout_account_refusal(
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
      last_failure_code = code, last_failure_message = left(message, 500)
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

revoke all on function public.record_payout_account_refusal(uuid, text, text, text)
from public, anon, authenticated, service_role, admin, auditor, escrow_service;
grant execute on function public.record_payout_account_refusal(uuid, text, text, text)
to payment_service;
