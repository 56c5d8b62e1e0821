-- Processor tokens, sealed outside the database: the forms a sealed token and its lookup take,
-- the columns that hold them beside each plain-text token column (filled by the Edge Functions
-- and by `payguard keys rotate`), their lookups set once, and the record of key rotations.
-- See the processor tokens section of supabase/schemas/payment_methods.sql.

set local check_function_bodies = off;

-- Section: the two forms a token is stored in

/**
 * A sealed token: the envelope `payguard.envelope` and `_shared/envelope.ts` write. Its form
 * only: the database cannot open it, and a value of another form is refused (23514).
 */
create domain private.sealed_token as jsonb
constraint sealed_token_form check (
  jsonb_typeof(value) = 'object'
  and value ?& array['v', 'alg', 'kid', 'wrapped_key', 'nonce', 'ciphertext']
  and value - array['v', 'alg', 'kid', 'wrapped_key', 'nonce', 'ciphertext'] = '{}'::jsonb
  and value -> 'v' = '1'::jsonb
  and value ->> 'alg' = 'A256GCM+A256KW'
  and jsonb_typeof(value -> 'kid') = 'string'
  and value ->> 'kid' ~ '^[A-Za-z0-9_.-]{1,64}$'
  and jsonb_typeof(value -> 'wrapped_key') = 'string'
  and value ->> 'wrapped_key' ~ '^[A-Za-z0-9_-]{54}$'
  and jsonb_typeof(value -> 'nonce') = 'string'
  and value ->> 'nonce' ~ '^[A-Za-z0-9_-]{16}$'
  and jsonb_typeof(value -> 'ciphertext') = 'string'
  and value ->> 'ciphertext' ~ '^[A-Za-z0-9_-]{23,255}$'
);

comment on domain private.sealed_token is
'A processor token sealed outside the database (AES-256-GCM, its data key wrapped under kid).';

/**
 * A token's lookup: `kid:` and the base64url of its HMAC-SHA-256 under that index key. Equal
 * tokens have equal lookups under one key; the token cannot be read back from it.
 */
create domain private.token_lookup as text
constraint token_lookup_form check (value ~ '^[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_-]{43}$');

comment on domain private.token_lookup is
'A keyed blind index of a processor token: kid, then base64url(HMAC-SHA-256).';

-- Section: key rotations
--
-- `payguard keys rotate` re-seals every sealed token under the newest key (and seals the
-- plain-text ones left), batch by batch; each run is a row here, audited, updated as batches
-- commit, so that an interrupted run is resumed rather than started again.

create table private.token_key_rotations (
  id uuid not null default gen_random_uuid(),
  -- The key every token is re-sealed under.
  target_kid text not null,
  status text not null default 'running',
  -- Tokens re-sealed or sealed so far, over every batch and every resumption.
  tokens_sealed bigint not null default 0,
  -- Who ran it: the database role and the operating-system user the CLI names.
  started_by text not null default session_user,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint token_key_rotations_pkey primary key (id),
  constraint token_key_rotations_target_kid_check check (target_kid ~ '^[A-Za-z0-9_.-]{1,64}$'),
  constraint token_key_rotations_status_check check (status in ('running', 'finished')),
  constraint token_key_rotations_tokens_sealed_check check (tokens_sealed >= 0),
  constraint token_key_rotations_finished_check
  check ((status = 'finished') = (finished_at is not null))
);

comment on table private.token_key_rotations is
'Each run of payguard keys rotate: the key it seals under, how far it got, who ran it.';

-- At most one rotation runs at a time.
create unique index token_key_rotations_one_running_idx on private.token_key_rotations ((true))
where status = 'running';

create trigger keep_row_timestamps
before insert or update on private.token_key_rotations
for each row execute function private.keep_row_timestamps();

-- Section: lookups are set once

/**
 * BEFORE UPDATE trigger: the lookup columns named as its arguments are set once. A lookup
 * names a row's token; a changed one would be another token under the same row, so a token
 * changes only with its row (a new payment method, a new payout method). `payguard keys
 * rotate` fills the lookups of rows written before they existed.
 */
create or replace function private.keep_token_lookups() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  old_values jsonb := to_jsonb(old);
  new_values jsonb := to_jsonb(new);
  lookup_column text;
begin
  foreach lookup_column in array tg_argv loop
    if old_values ->> lookup_column is not null
      and new_values ->> lookup_column is distinct from old_values ->> lookup_column then
      raise exception '%.%: a token''s lookup is set once and never changes',
      tg_table_name, lookup_column
      using errcode = 'PT409';
    end if;
  end loop;
  return new;
end
$$;

-- Section: the token columns

alter table public.payment_methods
add column processor_payment_method_id_sealed private.sealed_token,
add column processor_payment_method_id_lookup private.token_lookup,
add column processor_customer_id_lookup private.token_lookup,
add constraint payment_methods_processor_payment_method_id_lookup_key
unique (processor_payment_method_id_lookup),
add constraint payment_methods_sealed_with_lookup check (
  (processor_payment_method_id_sealed is null) = (processor_payment_method_id_lookup is null)
);

create trigger keep_token_lookups
before update on public.payment_methods
for each row execute function private.keep_token_lookups(
  'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
);

alter table public.payout_methods
add column processor_external_account_id_sealed private.sealed_token,
add column processor_external_account_id_lookup private.token_lookup,
add column processor_account_id_lookup private.token_lookup,
add constraint payout_methods_processor_external_account_id_lookup_key
unique (processor_external_account_id_lookup),
add constraint payout_methods_sealed_with_lookup check (
  (processor_external_account_id_sealed is null) = (processor_external_account_id_lookup is null)
);

create trigger keep_token_lookups
before update on public.payout_methods
for each row execute function private.keep_token_lookups(
  'processor_external_account_id_lookup', 'processor_account_id_lookup'
);

alter table public.processor_customers
add column processor_customer_id_sealed private.sealed_token,
add column processor_customer_id_lookup private.token_lookup,
add constraint processor_customers_processor_customer_id_lookup_key
unique (processor_customer_id_lookup),
add constraint processor_customers_sealed_with_lookup check (
  (processor_customer_id_sealed is null) = (processor_customer_id_lookup is null)
);

create trigger keep_token_lookups
before update on public.processor_customers
for each row execute function private.keep_token_lookups(
  'processor_customer_id_lookup'
);

alter table public.processor_accounts
add column processor_account_id_sealed private.sealed_token,
add column processor_account_id_lookup private.token_lookup,
add constraint processor_accounts_processor_account_id_lookup_key
unique (processor_account_id_lookup),
add constraint processor_accounts_sealed_with_lookup check (
  (processor_account_id_sealed is null) = (processor_account_id_lookup is null)
);

create trigger keep_token_lookups
before update on public.processor_accounts
for each row execute function private.keep_token_lookups(
  'processor_account_id_lookup'
);

alter table public.funding_attempts
add column processor_payment_method_id_lookup private.token_lookup,
add column processor_customer_id_lookup private.token_lookup;

create trigger keep_token_lookups
before update on public.funding_attempts
for each row execute function private.keep_token_lookups(
  'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
);

-- A recorded customer is re-sealed; a funding attempt copies its payment method's lookups.

create or replace function private.keep_processor_customer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- Only its sealed value changes (re-sealed under a newer key), and its lookup is filled
  -- once (private.keep_token_lookups).
  if (to_jsonb(new) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
    is distinct from
    (to_jsonb(old) - 'processor_customer_id_sealed' - 'processor_customer_id_lookup' - 'updated_at')
  then
    raise exception 'the processor customer of user % is recorded once and never changes',
    old.user_id
    using errcode = 'PT409';
  end if;
  return new;
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
    'customer_id', current_attempt.processor_customer_id,
    'payment_method_id', current_attempt.processor_payment_method_id,
    'payment_intent_id', current_attempt.processor_payment_intent_id,
    'status', current_attempt.status,
    'cancel_to_replace', replace_first
  );
end
$$;

-- Section: the audit trail redacts every form of a token, and records each rotation

create or replace function private.audit_redacted_columns(table_name text) returns text[]
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case table_name
    when 'payment_methods' then array[
      'processor_payment_method_id', 'processor_customer_id',
      'processor_payment_method_id_sealed', 'processor_payment_method_id_lookup',
      'processor_customer_id_lookup'
    ]
    when 'payout_methods' then array[
      'processor_account_id', 'processor_external_account_id',
      'processor_external_account_id_sealed', 'processor_external_account_id_lookup',
      'processor_account_id_lookup'
    ]
    when 'webhook_events' then array['payload']
    when 'processor_customers' then array[
      'processor_customer_id', 'processor_customer_id_sealed', 'processor_customer_id_lookup'
    ]
    when 'processor_accounts' then array[
      'processor_account_id', 'processor_account_id_sealed', 'processor_account_id_lookup'
    ]
    when 'funding_attempts' then array[
      'processor_payment_method_id', 'processor_customer_id',
      'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
    ]
    else array[]::text []
  end;
end
$$;

create trigger audit_trail
after insert or delete or update
on private.token_key_rotations
for each row
execute function private.capture_audit_row(
  'id', 'id', 'created_at', 'updated_at', 'finished_at'
);

create trigger refuse_unaudited_truncate
before truncate
on private.token_key_rotations
for each statement
execute function private.refuse_unaudited_truncate();
