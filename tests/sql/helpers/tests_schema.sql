-- The `tests` schema: helpers that let a pgTAP test act as an app client exactly as PostgREST
-- would, one request at a time. Installed into the test template database only, never
-- deployed. Each authenticate_* helper does what PostgREST does at the start of a request:
-- set_config(..., true) (SET LOCAL) of role, request.jwt.claims (with `role` inside),
-- request.method, request.path, request.headers (lower-cased names), request.cookies and
-- search_path; a GET or HEAD also makes the transaction read-only. The legacy per-claim
-- settings are cleared, as PostgREST no longer sets them.

create schema tests;
grant usage on schema tests
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

/**
 * Create a confirmed Supabase user known to the tests by `identifier`, and its public
 * profile once the project has one. Returns the new user's id.
 */
create function tests.create_supabase_user(
  identifier text,
  email text default null,
  phone text default null,
  metadata jsonb default '{}'
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  new_id uuid := gen_random_uuid();
begin
  insert into auth.users (
    id, aud, role, email, phone, email_confirmed_at,
    raw_app_meta_data, raw_user_meta_data, created_at, updated_at
  )
  values (
    new_id, 'authenticated', 'authenticated',
    coalesce(email, identifier || '@example.test'), phone, now(),
    '{"provider": "email", "providers": ["email"]}',
    jsonb_build_object('test_identifier', identifier) || coalesce(metadata, '{}'),
    now(), now()
  );
  if to_regclass('public.users') is not null then
    execute 'insert into public.users (id) values ($1) on conflict (id) do nothing'
    using new_id;
  end if;
  return new_id;
end
$$;

/** The id of the test user created as `identifier`; raises if there is none. */
create function tests.get_supabase_uid(identifier text) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  found uuid;
begin
  select u.id into found
  from auth.users as u
  where u.raw_user_meta_data ->> 'test_identifier' = identifier;
  if found is null then
    raise exception 'no test user %', identifier
    using errcode = 'no_data_found',
    hint = 'create it first with tests.create_supabase_user()';
  end if;
  return found;
end
$$;

/** The JWT claims Supabase Auth would issue to `user_id` at the given assurance level. */
create function tests.user_claims(
  user_id uuid,
  aal text default 'aal1',
  amr jsonb default null
) returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  now_epoch bigint := extract(epoch from now())::bigint;
  account auth.users;
begin
  if aal not in ('aal1', 'aal2', 'aal3') then
    raise exception 'aal must be aal1, aal2 or aal3, not %', aal using errcode = '22023';
  end if;
  select * into account from auth.users as u where u.id = user_id;
  if not found then
    raise exception 'no auth.users row with id %', user_id using errcode = 'no_data_found';
  end if;
  return jsonb_build_object(
    'iss', 'http://127.0.0.1:54321/auth/v1',
    'aud', 'authenticated',
    'sub', account.id,
    'email', coalesce(account.email, ''),
    'phone', coalesce(account.phone, ''),
    'app_metadata', coalesce(account.raw_app_meta_data, '{}'),
    'user_metadata', coalesce(account.raw_user_meta_data, '{}'),
    'role', 'authenticated',
    'aal', aal,
    'amr', coalesce(
      amr,
      case
        when aal = 'aal1' then jsonb_build_array(
          jsonb_build_object('method', 'password', 'timestamp', now_epoch)
        )
        else jsonb_build_array(
          jsonb_build_object('method', 'totp', 'timestamp', now_epoch),
          jsonb_build_object('method', 'password', 'timestamp', now_epoch)
        )
      end
    ),
    'session_id', gen_random_uuid(),
    'is_anonymous', false,
    'iat', now_epoch,
    'exp', now_epoch + 3600
  );
end
$$;

/**
 * Begin a request as `role` with `claims`, as PostgREST does. Not security definer, and
 * without SET clauses, so the settings last until the end of the transaction.
 */
create function tests.impersonate(
  role_name text,
  claims jsonb,
  method text default 'POST',
  path text default '/rest/v1/',
  headers jsonb default '{}'
) returns void
language plpgsql
as $$
declare
  request_headers jsonb := '{}';
  header record;
begin
  if to_regrole(role_name) is null then
    raise exception 'no role %', role_name using errcode = '22023';
  end if;
  if upper(method) not in ('GET', 'HEAD', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS') then
    raise exception 'not an HTTP method: %', method using errcode = '22023';
  end if;
  if upper(method) not in ('GET', 'HEAD') and current_setting('transaction_read_only') = 'on' then
    raise exception 'cannot begin a % request: an earlier GET made this transaction read-only',
    upper(method)
    using errcode = '25006',
    hint = 'put the GET last in the test, or end the transaction before writing again';
  end if;
  for header in select * from jsonb_each(coalesce(headers, '{}')) loop
    request_headers := request_headers || jsonb_build_object(lower(header.key), header.value);
  end loop;
  perform set_config('search_path', 'public, extensions', true);
  perform set_config('role', role_name, true);
  perform set_config('request.jwt.claims', (claims || jsonb_build_object('role', role_name))::text, true);
  perform set_config('request.jwt.claim.sub', '', true);
  perform set_config('request.jwt.claim.role', '', true);
  perform set_config('request.jwt.claim.email', '', true);
  perform set_config('request.jwt.claim', '', true);
  perform set_config('request.method', upper(method), true);
  perform set_config('request.path', path, true);
  perform set_config('request.headers', request_headers::text, true);
  perform set_config('request.cookies', '{}', true);
  if upper(method) in ('GET', 'HEAD') then
    -- PostgREST runs reads in a read-only transaction.
    perform set_config('transaction_read_only', 'on', true);
  end if;
end
$$;

/**
 * Act as the user `user_id`, signed in at `aal` with the given `amr`. `role_name` is the
 * JWT's role: authenticated, or a staff role (admin, auditor) that a token hook grants.
 */
create function tests.authenticate_as(
  user_id uuid,
  aal text default 'aal1',
  amr jsonb default null,
  method text default 'POST',
  path text default '/rest/v1/',
  headers jsonb default '{}',
  role_name text default 'authenticated'
) returns void
language plpgsql
as $$
begin
  perform tests.impersonate(
    role_name,
    tests.user_claims(user_id, aal, amr) || jsonb_build_object('role', role_name),
    method,
    path,
    headers
  );
end
$$;

/** Act as the test user created as `identifier`. */
create function tests.authenticate_as(
  identifier text,
  aal text default 'aal1',
  amr jsonb default null,
  method text default 'POST',
  path text default '/rest/v1/',
  headers jsonb default '{}',
  role_name text default 'authenticated'
) returns void
language plpgsql
as $$
begin
  perform tests.authenticate_as(
    tests.get_supabase_uid(identifier), aal, amr, method, path, headers, role_name
  );
end
$$;

/** Act as a service role (service_role, or a backend role such as payment_service). */
create function tests.authenticate_as_service(
  role_name text default 'service_role',
  method text default 'POST',
  path text default '/rest/v1/',
  headers jsonb default '{}'
) returns void
language plpgsql
as $$
begin
  perform tests.impersonate(
    role_name,
    jsonb_build_object(
      'iss', 'supabase-demo',
      'iat', extract(epoch from now())::bigint,
      'exp', extract(epoch from now())::bigint + 3600
    ),
    method,
    path,
    headers
  );
end
$$;

/** Act as a request with no JWT at all: PostgREST's anonymous role. */
create function tests.clear_authentication(
  method text default 'POST',
  path text default '/rest/v1/',
  headers jsonb default '{}'
) returns void
language plpgsql
as $$
begin
  perform tests.impersonate('anon', '{}', method, path, headers);
end
$$;

/**
 * Put a milestone payment in `target` for a test's set-up, as its owner: the money moves
 * along the legal path (funded, then released, disputed or refunded), but who may make each
 * move is not checked. The payment gets its project's escrow account in its currency, which
 * must exist. Tests of the transitions themselves go through the API roles instead.
 */
create function tests.set_milestone_payment_status(
  payment uuid, target public.milestone_payment_status
) returns void
language plpgsql
as $$
declare
  path text[] := case target::text
    when 'pending' then array[]::text[]
    when 'canceled' then array['canceled']
    when 'funded' then array['funded']
    when 'disputed' then array['funded', 'disputed']
    when 'released' then array['funded', 'released']
    when 'refunded' then array['funded', 'disputed', 'refunded']
  end;
  step text;
begin
  alter table public.milestone_payments disable trigger check_milestone_payment_transition;
  foreach step in array path loop
    update public.milestone_payments as mp
    set
      status = step::public.milestone_payment_status,
      escrow_account_id = coalesce(
        mp.escrow_account_id,
        (
          select e.id from public.escrow_accounts as e
          join public.project_milestones as m on m.project_id = e.project_id
          where m.id = mp.milestone_id and e.currency = mp.currency
        )
      ),
      processor_payment_intent_id = case
        when step = 'funded' then 'pi_fixture' || replace(mp.id::text, '-', '')
        else mp.processor_payment_intent_id
      end,
      funded_at = case when step = 'funded' then now() else mp.funded_at end,
      released_at = case when step = 'released' then now() else mp.released_at end
    where mp.id = payment;
  end loop;
  alter table public.milestone_payments enable trigger check_milestone_payment_transition;
end
$$;

/**
 * Submit milestone `milestone` for review, for a test's set-up, as its project's contractor
 * (the request's user for the statement's length): the review trigger holds the move as for
 * any submission, the review window opens and the owner is notified. Run as the owner of the
 * schema, outside a request (a request's settings are put back after it).
 */
create function tests.submit_milestone(milestone uuid) returns void
language plpgsql
as $$
declare
  claims text := current_setting('request.jwt.claims', true);
  sub text := current_setting('request.jwt.claim.sub', true);
  contractor uuid := (
    select p.contractor_id from public.project_milestones as m
    join public.projects as p on p.id = m.project_id
    where m.id = milestone
  );
begin
  perform set_config('request.jwt.claims', jsonb_build_object('sub', contractor)::text, true);
  perform set_config('request.jwt.claim.sub', contractor::text, true);
  update public.project_milestones as m set status = 'completed'
  where m.id = milestone and m.status <> 'completed';
  perform set_config('request.jwt.claims', coalesce(claims, ''), true);
  perform set_config('request.jwt.claim.sub', coalesce(sub, ''), true);
end
$$;

/** Credit `amount` to a user's wallet from clearing, for a test's set-up (not held). */
create function tests.fund_wallet(owner uuid, amount bigint, wallet_currency char(3) default 'USD')
returns void
language sql
as $$
  select private.ledger_transfer(
    'test_deposit', private.ledger_system_account('processor_clearing', wallet_currency),
    private.ledger_wallet(owner, wallet_currency), amount, wallet_currency
  )
$$;

/**
 * What PostgREST makes of an RPC's answer: when the call set response.status to an error
 * status, the answer is the error ({code, message, details, hint}), raised here so that
 * throws_ok can check it. Clears response.status for the next call.
 */
create function tests.raise_if_refused(answer jsonb) returns jsonb
language plpgsql
as $$
declare
  status integer := coalesce(nullif(current_setting('response.status', true), ''), '200')::integer;
begin
  perform set_config('response.status', '', true);
  if status >= 400 then
    raise exception '%', answer ->> 'message'
    using errcode = answer ->> 'code',
    detail = coalesce(answer ->> 'details', ''),
    hint = coalesce(answer ->> 'hint', '');
  end if;
  return answer;
end
$$;

grant execute on all functions in schema tests
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

-- Classes 3 and 5, refused calls and authorization first: a client's answer as a
-- value, so that the answers to two requests can be compared.

/**
 * What PostgREST answers a request made of `statement`, as jsonb: for an error, whether
 * raised or returned by an RPC with an error status in response.status, {status, code,
 * message, details, hint}; otherwise {status, rows}. `statement` is an RPC call (`select
 * public.<rpc>(…)`) or a table write. The text of `subject` is replaced by <id> throughout,
 * so that the answers about two ids compare. Whatever the request did is undone: requests
 * answered one after the other all start from the same state.
 */
create function tests.answer(statement text, subject uuid default null) returns jsonb
language plpgsql
as $$
declare
  result jsonb;
  body jsonb;
  affected bigint;
  status integer;
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
begin
  perform set_config('response.status', '', true);
  begin
    if statement ~* '^\s*select\s' then
      execute statement into body;
    else
      execute statement;
    end if;
    get diagnostics affected = row_count;
    status := coalesce(nullif(current_setting('response.status', true), ''), '200')::integer;
    result := case
      when status >= 400 then jsonb_build_object(
        'status', status, 'code', body ->> 'code', 'message', body ->> 'message',
        'details', nullif(body ->> 'details', ''), 'hint', nullif(body ->> 'hint', '')
      )
      else jsonb_build_object('status', status, 'rows', affected)
    end;
    raise exception 'tests.answer undoes the request' using errcode = 'T0001';
  exception when others then
    if result is null then
      get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
      error_detail = pg_exception_detail, error_hint = pg_exception_hint;
      -- PostgREST's statuses for the errors a request may meet.
      status := case
        when error_state ~ '^PT[1-5][0-9][0-9]$' then substr(error_state, 3)::integer
        when error_state = '42501' then
          case when current_setting('role', true) = 'anon' then 401 else 403 end
        when error_state in ('23503', '23505') then 409
        when left(error_state, 2) in ('22', '23') or error_state = 'P0001' then 400
        when error_state in ('42883', '42P01') then 404
        else 500
      end;
      result := jsonb_build_object(
        'status', status, 'code', error_state, 'message', error_message,
        'details', nullif(error_detail, ''), 'hint', nullif(error_hint, '')
      );
    end if;
  end;
  perform set_config('response.status', '', true);
  if subject is not null then
    result := replace(result::text, subject::text, '<id>')::jsonb;
  end if;
  return result;
end
$$;

/**
 * The distinct answers (tests.answer) to `statement`, a format() string with one %L, for
 * each of `ids` and for an id that does not exist, as a jsonb array: one element when the
 * answer says nothing of which ids exist.
 */
create function tests.answers_for(statement text, ids uuid[]) returns jsonb
language sql
as $$
  select jsonb_agg(distinct tests.answer(format(statement, i), i))
  from unnest(ids || gen_random_uuid()) as i
$$;

grant execute on function tests.answer(text, uuid), tests.answers_for(text, uuid[])
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

-- Processor tokens, as the functions store them ----------------------------------------------

/**
 * The lookup of processor token `token` (a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id), as
 * `_shared/token_index.ts` computes it, under the tests' own index key `pgtap`: what the
 * functions store beside a sealed token, and what the stripe-webhook function puts in an event
 * where Stripe wrote the token.
 */
create function tests.token_lookup(token text) returns text
language sql
immutable
as $$
  select 'pgtap:' || rtrim(translate(encode(extensions.hmac(
    convert_to('payguard.token-index' || chr(31) || '1' || chr(31) || token, 'UTF8'),
    convert_to('payguard pgTAP index key', 'UTF8'),
    'sha256'
  ), 'base64'), '+/', '-_'), '=')
$$;

/**
 * A sealed token of the envelope's form, under key id `pgtap`: random bytes, which no key
 * opens. The database checks a sealed value's form only; what opens one is tested where the
 * keys live (Deno and Python).
 */
create function tests.sealed_token() returns jsonb
language sql
volatile
as $$
  select jsonb_build_object(
    'v', 1, 'alg', 'A256GCM+A256KW', 'kid', 'pgtap',
    'wrapped_key', rtrim(translate(encode(extensions.gen_random_bytes(40), 'base64'), '+/', '-_'), '='),
    'nonce', rtrim(translate(encode(extensions.gen_random_bytes(12), 'base64'), '+/', '-_'), '='),
    'ciphertext', rtrim(translate(encode(extensions.gen_random_bytes(30), 'base64'), '+/', '-_'), '=')
  )
$$;

/**
 * `event` as the stripe-webhook function passes it on: each processor token in its text (a
 * whole value, or words of a message) replaced by its lookup (tests.token_lookup).
 */
create function tests.as_passed_on(event jsonb) returns jsonb
language plpgsql
immutable
as $$
declare
  event_text text := event::text;
  token text;
begin
  for token in
    select distinct m[1] from regexp_matches(
      event_text, '\m((?:pm|cus|acct|ba|card)_[A-Za-z0-9]+)', 'g'
    ) as m
    order by 1 desc
  loop
    event_text := regexp_replace(
      event_text, '\m' || token || '(?![A-Za-z0-9])', tests.token_lookup(token), 'g'
    );
  end loop;
  return event_text::jsonb;
end
$$;

grant execute on function tests.as_passed_on(jsonb)
to payment_service, service_role, authenticated, admin, escrow_service, auditor, anon;
grant execute on function tests.token_lookup(text)
to payment_service, service_role, authenticated, admin, escrow_service, auditor, anon;
grant execute on function tests.sealed_token()
to payment_service, service_role, authenticated, admin, escrow_service, auditor, anon;

-- The border with Stripe: processor events as the stripe-webhook function passes them on.

/**
 * A Stripe event of `event_type` about `object` (its data.object), with the id `event_id` (a
 * fresh evt_… when null), as the stripe-webhook function passes it on: its processor tokens
 * replaced by their lookups (tests.as_passed_on).
 */
create function tests.stripe_event(event_type text, object jsonb, event_id text default null)
returns jsonb
language sql
volatile
as $$
  select jsonb_build_object(
    -- Letters only: hex digits of a UUID can line up into a Luhn-valid card number, which
    -- the card-data guard rightly refuses in an id.
    'id', coalesce(event_id, 'evt_' || translate(
      replace(gen_random_uuid()::text, '-', ''), '0123456789', 'ghijklmnop'
    )),
    'object', 'event',
    'api_version', '2024-06-20',
    'created', extract(epoch from now())::bigint,
    'livemode', false,
    'type', event_type,
    'data', jsonb_build_object('object', tests.as_passed_on(object))
  )
$$;

/**
 * A PaymentIntent `intent_id` for milestone payment `payment` (named in its metadata), of
 * `amount` minor units of `intent_currency` (lower case, as Stripe writes it).
 */
create function tests.payment_intent(
  intent_id text, payment uuid, amount bigint, intent_currency text default 'usd',
  extra jsonb default '{}'
) returns jsonb
language sql
immutable
as $$
  select jsonb_build_object(
    'id', intent_id, 'object', 'payment_intent', 'amount', amount,
    'currency', intent_currency, 'status', 'succeeded',
    'metadata', jsonb_build_object('milestone_payment_id', payment)
  ) || extra
$$;

/** A Stripe dispute (a chargeback) `dispute_id` over PaymentIntent `intent_id`. */
create function tests.stripe_dispute(
  dispute_id text, intent_id text, amount bigint, dispute_status text default 'needs_response',
  dispute_currency text default 'usd'
) returns jsonb
language sql
immutable
as $$
  select jsonb_build_object(
    'id', dispute_id, 'object', 'dispute', 'amount', amount, 'currency', dispute_currency,
    'charge', 'ch_' || substr(intent_id, 4), 'payment_intent', intent_id,
    'reason', 'fraudulent', 'status', dispute_status
  )
$$;

grant execute on function tests.stripe_dispute(text, text, bigint, text, text)
to payment_service, service_role, authenticated, admin;
grant execute on function tests.stripe_event(text, jsonb, text)
to payment_service, service_role, authenticated, admin;
grant execute on function tests.payment_intent(text, uuid, bigint, text, jsonb)
to payment_service, service_role, authenticated, admin;

-- Connected accounts (processor_accounts) ----------------------------------------------------

/** The processor_accounts row of connected account `account_id` (a Stripe `acct_…`), by lookup. */
create function tests.account_row(account_id text) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select a.id from public.processor_accounts as a
  where a.processor_account_id_lookup = tests.token_lookup(account_id)
$$;

grant execute on function tests.account_row(text)
to payment_service, service_role, authenticated, admin, escrow_service, auditor;

/**
 * The processor's verification of connected account `account_id`, as account.updated records
 * it: the account and its payout methods become `verified` (only a verified account is paid).
 * With `as_of`, it is recorded as the processor's word at that time, so that an account.updated
 * the processor sent earlier (its account's creation, delivered late) is ignored as older.
 */
create function tests.verify_connected_account(
  account_id text, as_of timestamptz default null
) returns void
language sql
volatile
as $$
  update public.processor_accounts
  set verification_status = 'verified', state_as_of = coalesce(as_of, state_as_of)
  where processor_account_id_lookup = tests.token_lookup(account_id);
  update public.payout_methods set verification_status = 'verified'
  where processor_account_id_lookup = tests.token_lookup(account_id);
$$;

-- Pgtap for the backend and staff roles ------------------------------------------------------

/**
 * pgTAP lives in `extensions`, where the backend and staff roles have no USAGE: this lets
 * `roles` (by default payment_service, escrow_service, admin and auditor) call the assertions.
 * It grants nothing on any table; run it inside the test's transaction, which rolls it back.
 */
create function tests.let_roles_call_pgtap(
  variadic roles name[] default array['payment_service', 'escrow_service', 'admin', 'auditor']
)
returns void
language plpgsql
volatile
as $$
begin
  execute format(
    'grant usage on schema extensions to %s',
    (select string_agg(quote_ident(r), ', ') from unnest(roles) as r)
  );
end
$$;

-- A project with milestones, escrow and pending milestone payments -------------------------

/**
 * `owner`'s project `project_id` for `contractor` (none when null), titled `project_title`,
 * with milestone n (n = 1 … cardinality(amounts)) of amounts[n] in `currency`, titled
 * titles[n] ('Step' when titles is null), whose id is the project's with its first digit 2
 * and its last group n (10000000-…-000000000001 gives 20000000-…-00000000000n); the owner's
 * escrow account for it (id `escrow_id`, else a new one) unless `escrow` is false; and a
 * pending milestone payment, paid by the owner, for each of the first `payments` milestones
 * (all by default), its id the project's with first digit 3 and last group n. Run as the
 * owner of the schema.
 */
create function tests.create_project_with_milestones(
  owner text,
  contractor text,
  amounts bigint[],
  titles text[] default null,
  payments integer default null,
  escrow boolean default true,
  project_id uuid default '10000000-0000-4000-8000-000000000001',
  escrow_id uuid default null,
  project_title text default 'Kitchen remodel',
  currency char(3) default 'USD'
)
returns void
language plpgsql
volatile
as $$
begin
  insert into public.projects (id, owner_id, contractor_id, title)
  values (project_id, tests.get_supabase_uid(owner),
    case when contractor is not null then tests.get_supabase_uid(contractor) end,
    project_title);
  insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
  select tests.project_fixture_id(project_id, 2, n), project_id, n,
    coalesce(titles[n], 'Step'), amounts[n], currency
  from generate_series(1, cardinality(amounts)) as n;
  if escrow then
    insert into public.escrow_accounts (id, user_id, project_id, currency)
    values (coalesce(escrow_id, gen_random_uuid()), tests.get_supabase_uid(owner), project_id,
      currency);
  end if;
  insert into public.milestone_payments (id, milestone_id, payer_id)
  select tests.project_fixture_id(project_id, 3, n), tests.project_fixture_id(project_id, 2, n),
    tests.get_supabase_uid(owner)
  from generate_series(1, coalesce(payments, cardinality(amounts))) as n;
end
$$;

/**
 * The id of a project's fixture: the project's id with its first digit `kind` (2 for a
 * milestone, 3 for its payment) and its last group `n`.
 */
create function tests.project_fixture_id(project_id uuid, kind integer, n integer) returns uuid
language sql
immutable
as $$
  select (kind::text || substr(project_id::text, 2, 23) || lpad(n::text, 12, '0'))::uuid
$$;

/**
 * The border tests' fixture: `owner`'s project 10000000-…-000000000001 for `contractor`, its
 * escrow account in USD, and `payments` milestones 20000000-…-00000000000n of 10000 × n USD,
 * titled 'Milestone n', each with its pending milestone payment 30000000-…-00000000000n paid
 * by `owner` (n = 1 … payments, at most 9). Run as the owner of the schema.
 */
create function tests.create_project_payments(owner text, contractor text, payments integer)
returns void
language sql
volatile
as $$
  select tests.create_project_with_milestones(
    owner, contractor,
    amounts => array(select 10000::bigint * n from generate_series(1, payments) as n),
    titles => array(select 'Milestone ' || n from generate_series(1, payments) as n)
  )
$$;
