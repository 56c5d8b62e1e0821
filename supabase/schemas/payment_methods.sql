-- Payment and payout methods
--
-- How users pay (payment_methods) and how contractors get paid (payout_methods): processor
-- references only, never card data.
--
-- Only the processor's references are stored: a Stripe PaymentMethod (pm_…) of a Stripe
-- Customer (cus_…), with the brand, last four digits and expiry that Stripe returns. A payout
-- method is a Stripe external account (ba_… or card_…) of a connected account (acct_…).
-- Those references are tokens, sealed outside the database and found by their lookups (the
-- first section).
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/payment_methods.toml, policies/payout_methods.toml

set local check_function_bodies = off;

-- Section: processor tokens
--
-- A processor token (a Stripe `pm_`, `cus_`, `acct_`, `ba_` or `card_` id) is a credential:
-- with the platform's Stripe key it charges a card or pays money out. The database never
-- holds the keys that seal one: the Edge Functions and the CLI seal a token (an envelope,
-- docs/token-envelopes.md) and compute its lookup (a keyed blind index) where the keys live,
-- and store both. The database checks their form, finds and keeps rows unique by lookup, and
-- grants the sealed columns to payment_service alone (policies/).
--
-- The token columns, table by table (each named after the Stripe id it stands for; the id
-- itself is stored nowhere):
--   processor_customers.processor_customer_id           sealed, lookup (unique)
--   payment_methods.processor_payment_method_id         sealed, lookup (unique)
--   payment_methods.processor_customer_id               lookup (sealed in processor_customers)
--   processor_accounts.processor_account_id             lookup (unique); sealed once its owner
--                                                       records it (account.updated may come
--                                                       first)
--   payout_methods.processor_account_id                 lookup (sealed in processor_accounts)
--   payout_methods.processor_external_account_id        sealed, lookup (unique)
--   funding_attempts.processor_payment_method_id        lookup
--   funding_attempts.processor_customer_id              lookup
-- A sealed value's additional authenticated data names its table, the Stripe id's column
-- name and the row's key (processor_customers: user_id; the others: id).

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

/**
 * `message` with each processor token in it (a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id at a
 * word's start) replaced by its kind alone, `[acct_…]`, and each token's lookup (`kid:` and 43
 * base64url characters, as the stripe-webhook function passes a token) by `[lookup]`: for the
 * words of a refusal or a failure, the processor's or the database's, kept where staff or the
 * user read them.
 */
create or replace function private.without_processor_ids(message text) returns text
language sql
immutable
set search_path = ''
as $$
  select regexp_replace(
    regexp_replace(message, '\m(pm|cus|acct|ba|card)_[A-Za-z0-9]{6,}', '[\1_…]', 'g'),
    '(?<![A-Za-z0-9_.-])[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])', '[lookup]', 'g'
  )
$$;

/**
 * Whether `value` (a jsonb document) holds a processor token in the clear in one of its strings:
 * a `pm_`, `cus_`, `acct_`, `ba_` or `card_` id not glued to a letter or digit before it, then
 * at least eight letters or digits with a capital or a digit among them (Stripe's ids are
 * random; its words `card_present`, `card_payments` are not ids). The stripe-webhook function
 * (`stripe-webhook/lookups.ts`) and `payguard keys scan` look for the same.
 */
create or replace function private.holds_processor_token(value jsonb) returns boolean
language sql
immutable
set search_path = ''
as $$
  select exists (
    select from jsonb_path_query(value, 'strict $.**') as item
    where jsonb_typeof(item) = 'string'
      and item #>> '{}'
      ~ '(?<![A-Za-z0-9])(pm|cus|acct|ba|card)_(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{8,}'
  )
$$;

grant execute on function private.without_processor_ids(text) to payment_service;
grant execute on function private.without_processor_ids(text) to service_role;

-- The trigger that keeps tokens out of webhook payloads asks it, in payment_service's writes.
grant execute on function private.holds_processor_token(jsonb) to payment_service;

-- Key rotations
--
-- `payguard keys rotate` re-seals every sealed token under the newest key, batch by batch;
-- each run is a row here, audited, updated as batches commit, so that an interrupted run is
-- resumed rather than started again.

create table private.token_key_rotations (
  id uuid not null default gen_random_uuid(),
  -- The key every token is re-sealed under (kind envelope), or every lookup moves to (kind
  -- index: `payguard keys reindex`).
  target_kid text not null,
  status text not null default 'running',
  -- Token values sealed, re-sealed or looked up (kind envelope), or lookups moved (kind
  -- index), so far, over every batch and every resumption.
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
  check ((status = 'finished') = (finished_at is not null)),
  kind text not null default 'envelope',
  constraint token_key_rotations_kind_check check (kind in ('envelope', 'index'))
);

comment on table private.token_key_rotations is
'Each run of payguard keys rotate or reindex: the key it moves to, how far it got, who ran it.';

-- At most one rotation runs at a time.
create unique index token_key_rotations_one_running_idx on private.token_key_rotations ((true))
where status = 'running';

create trigger keep_row_timestamps
before insert or update on private.token_key_rotations
for each row execute function private.keep_row_timestamps();

-- Rotating the index key
--
-- `payguard keys reindex` moves every lookup to the current index key: it opens each sealed
-- token, looks it up again, and writes the new lookup on its row and on every row that refers
-- to the same token by the old one. Only the tables' owner may, in a transaction that names
-- the target key (`payguard.token_reindex`); anyone else still meets the set-once rule. While
-- the lookups are moved, the functions hold both index keys and match a token by the lookup
-- already stored for it, under either (private.stored_token_lookup).

/**
 * Whether a lookup may change from `old_lookup` to `new_lookup` in this transaction: the
 * same token moved to another index key by `payguard keys reindex`, run by the owner of table
 * `relation`, in a transaction whose `payguard.token_reindex` names the new lookup's key, while
 * a run of kind index to that key is recorded as running.
 */
create or replace function private.token_reindexing(
  relation oid, old_lookup text, new_lookup text
) returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  if coalesce(
    nullif(current_setting('payguard.token_reindex', true), '') = split_part(new_lookup, ':', 1)
    and split_part(old_lookup, ':', 1) <> split_part(new_lookup, ':', 1)
    and current_user = (select pg_get_userbyid(c.relowner) from pg_catalog.pg_class as c
      where c.oid = relation),
    false
  ) then
    -- and a run of `keys reindex` to that key is under way (only the owner reads the runs)
    return exists (
      select from private.token_key_rotations as r
      where r.kind = 'index' and r.status = 'running'
        and r.target_kid = split_part(new_lookup, ':', 1)
    );
  end if;
  return false;
end
$$;

/**
 * The one of `candidates` (a token's lookups, one under each index key the caller holds) that
 * a row stores as that token's own lookup, the first found in the candidates' order; null when
 * none does. While the index is rebuilt under a new key, a function matches and writes a token
 * by the lookup already stored for it. Security definer: it says only whether a token is
 * stored, which payment_service, its one caller, may know.
 */
create or replace function private.stored_token_lookup(candidates text[]) returns text
language sql
stable
security definer
set search_path = ''
as $$
  select found.lookup from (
    select c.processor_customer_id_lookup::text as lookup from public.processor_customers as c
    where c.processor_customer_id_lookup = any(candidates)
    union all
    select m.processor_payment_method_id_lookup::text from public.payment_methods as m
    where m.processor_payment_method_id_lookup = any(candidates)
    union all
    select a.processor_account_id_lookup::text from public.processor_accounts as a
    where a.processor_account_id_lookup = any(candidates)
    union all
    select p.processor_external_account_id_lookup::text from public.payout_methods as p
    where p.processor_external_account_id_lookup = any(candidates)
  ) as found
  order by array_position(candidates, found.lookup)
  limit 1
$$;

-- Every role that may write a token's table runs the set-once triggers, which ask it: it reads
-- only the caller's own setting and role.
grant execute on function private.token_reindexing(oid, text, text)
to authenticated, admin, payment_service, escrow_service, service_role;

grant execute on function private.stored_token_lookup(text[]) to payment_service;

-- Lookups are set once

/**
 * BEFORE UPDATE trigger: the lookup columns named as its arguments are set once. A lookup
 * names a row's token; a changed one would be another token under the same row, so a token
 * changes only with its row (a new payment method, a new payout method). `payguard keys
 * reindex` alone moves one to another index key (private.token_reindexing).
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
      and new_values ->> lookup_column is distinct from old_values ->> lookup_column
      and not private.token_reindexing(
        tg_relid, old_values ->> lookup_column, new_values ->> lookup_column
      ) then
      raise exception '%.%: a token''s lookup is set once and never changes',
      tg_table_name, lookup_column
      using errcode = 'PT409';
    end if;
  end loop;
  return new;
end
$$;

-- Section: payment methods

create type public.payment_method_type as enum (
  'credit_card', 'debit_card', 'bank_account', 'paypal', 'stripe', 'apple_pay', 'google_pay'
);

create table public.payment_methods (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id) on delete cascade,
  type public.payment_method_type not null,
  processor text not null default 'stripe' check (processor = 'stripe'),
  brand text check (char_length(brand) <= 32),
  last4 char(4) check (last4 ~ '^[0-9]{4}$'),
  exp_month smallint check (exp_month between 1 and 12),
  exp_year smallint check (exp_year between 2000 and 2100),
  nickname text check (char_length(nickname) <= 100),
  is_default boolean not null default false,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The payment method sealed, and the lookups of both ids (processor tokens, above): only
  -- payment_service reads the sealed one. The customer is sealed in processor_customers.
  processor_payment_method_id_sealed private.sealed_token not null,
  processor_payment_method_id_lookup private.token_lookup not null,
  processor_customer_id_lookup private.token_lookup not null,
  constraint payment_methods_processor_payment_method_id_lookup_key
  unique (processor_payment_method_id_lookup)
);

comment on table public.payment_methods is
'A user''s saved payment method: Stripe references, brand, last4 and expiry. No card data.';

create index payment_methods_user_id_idx on public.payment_methods (user_id);

-- At most one default payment method per user.
create unique index payment_methods_one_default_idx on public.payment_methods (user_id)
where is_default;

-- Its lookups are set once (processor tokens, above).
create trigger keep_token_lookups
before update on public.payment_methods
for each row execute function private.keep_token_lookups(
  'processor_payment_method_id_lookup', 'processor_customer_id_lookup'
);

create trigger keep_row_timestamps
before insert or update on public.payment_methods
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.payment_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at'
);

/** True when the requesting user owns the payment method. */
create or replace function private.owns_payment_method(payment_method uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.payment_methods as m
      where m.id = payment_method and m.user_id = (select auth.uid())
    )
  );
end
$$;

grant execute on function private.owns_payment_method(uuid) to authenticated;

-- Section: payout methods

create type public.payout_method_type as enum ('bank_account', 'debit_card');

create table public.payout_methods (
  id uuid not null default gen_random_uuid(),
  user_id uuid not null default auth.uid(),
  type public.payout_method_type not null,
  processor text not null default 'stripe',
  bank_name text,
  last4 char(4),
  -- What the payout method pays out in: a withdrawal to it is in this currency.
  currency char(3) not null,
  nickname text,
  is_default boolean not null default false,
  metadata jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- unverified: the processor has not reported on the account yet; pending: it needs more
  -- information before paying out; verified: payouts are enabled; restricted: the processor
  -- disabled them. Set by payment_service from account.updated.
  verification_status text not null default 'unverified',
  -- The external account that receives the payout, sealed, and the lookups of it and of the
  -- user's connected account (processor tokens, above): only payment_service reads the sealed
  -- one. The connected account is sealed in processor_accounts.
  processor_external_account_id_sealed private.sealed_token not null,
  processor_external_account_id_lookup private.token_lookup not null,
  processor_account_id_lookup private.token_lookup not null,
  -- Until then, a withdrawal to it needs two admins' approval: the database sets it when the
  -- payout method is added, changes destination or is verified (the cool-down section below).
  cool_down_until timestamptz,
  constraint payout_methods_pkey primary key (id),
  constraint payout_methods_user_id_fkey foreign key (user_id)
  references public.users (id) on delete cascade,
  constraint payout_methods_processor_check check (processor = 'stripe'),
  constraint payout_methods_bank_name_check check (char_length(bank_name) <= 100),
  constraint payout_methods_last4_check check (last4 ~ '^[0-9]{4}$'),
  constraint payout_methods_currency_check check (currency ~ '^[A-Z]{3}$'),
  constraint payout_methods_nickname_check check (char_length(nickname) <= 100),
  constraint payout_methods_metadata_check check (jsonb_typeof(metadata) = 'object'),
  constraint payout_methods_verification_status_check
  check (verification_status in ('unverified', 'pending', 'verified', 'restricted')),
  -- The key a withdrawal's foreign key names: its (payout method, owner, currency) are
  -- those of one payout method (see withdrawals.sql).
  constraint payout_methods_id_user_id_currency_key unique (id, user_id, currency),
  constraint payout_methods_processor_external_account_id_lookup_key
  unique (processor_external_account_id_lookup)
);

comment on table public.payout_methods is
'Where a contractor''s money goes: a Stripe external account of their connected account.';

comment on column public.payout_methods.cool_down_until is
'Until then, a withdrawal to this payout method needs two admins'' approval. Set by the '
'database when it is added, changes destination or is verified '
'(payout_method_cool_down_seconds).';

create index payout_methods_user_id_idx on public.payout_methods (user_id);

-- At most one default payout method per user.
create unique index payout_methods_one_default_idx on public.payout_methods (user_id)
where is_default;

-- Its lookups are set once (processor tokens, above).
create trigger keep_token_lookups
before update on public.payout_methods
for each row execute function private.keep_token_lookups(
  'processor_external_account_id_lookup', 'processor_account_id_lookup'
);

create trigger keep_row_timestamps
before insert or update on public.payout_methods
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.payout_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at', 'cool_down_until'
);

/** True when the requesting user owns the payout method. */
create or replace function private.owns_payout_method(payout_method uuid) returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.payout_methods as m
      where m.id = payout_method and m.user_id = (select auth.uid())
    )
  );
end
$$;

grant execute on function private.owns_payout_method(uuid) to authenticated;

-- Section: the cool-down of a changed payout method
--
-- Redirecting payouts is the classic takeover move: whoever holds a user's session adds a
-- bank account of their own and withdraws at once. So adding a payout method, changing where
-- it pays (its type, currency, bank or last digits) and its verification each start a
-- cool-down (the setting payout_method_cool_down_seconds, 72 hours): a withdrawal requested
-- to it meanwhile waits for two distinct admins' approval (withdrawals.sql), and one approved
-- before cannot be paid out until the cool-down ends. Each start tells the user (a
-- notification, the one channel to users the system has) and raises a security alert for
-- staff. Re-sealing or re-indexing its processor token is not a change of destination.

insert into private.settings (key, value, description)
values (
  'payout_method_cool_down_seconds', '259200',
  'After a payout method is added, changed or verified, withdrawals to it need two admins'' '
  || 'approval for this many seconds.'
);

/**
 * What a write to a payout method changed that starts a cool-down: `added` (an insert),
 * `changed` (its type, currency, bank name or last4), `verified` (a move to verified); null
 * for anything else (a nickname, a default, a token sealed or indexed anew).
 */
create or replace function private.payout_method_change(
  operation text, old_method public.payout_methods, new_method public.payout_methods
) returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case
    when operation = 'INSERT' then 'added'
    when (new_method.type, new_method.currency, new_method.bank_name, new_method.last4)
      is distinct from
      (old_method.type, old_method.currency, old_method.bank_name, old_method.last4)
      then 'changed'
    when new_method.verification_status = 'verified'
      and old_method.verification_status <> 'verified' then 'verified'
  end;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger on payout_methods: cool_down_until, the database's alone.
 * A change that starts a cool-down (private.payout_method_change) sets it to
 * payout_method_cool_down_seconds from now; any other write keeps it.
 */
create or replace function private.start_payout_method_cool_down() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.payout_method_change(tg_op, old, new) is not null then
    new.cool_down_until := now() + make_interval(
      secs => (private.setting('payout_method_cool_down_seconds') #>> '{}')::numeric
    );
  elsif tg_op = 'UPDATE' then
    new.cool_down_until := old.cool_down_until;
  end if;
  return new;
end
$$;

create trigger start_payout_method_cool_down
before insert or update on public.payout_methods
for each row execute function private.start_payout_method_cool_down();

/**
 * AFTER INSERT OR UPDATE trigger on payout_methods: when the write started a cool-down
 * (private.payout_method_change), the user is told and a payout_method_changed security alert
 * is raised, naming the change.
 */
create or replace function private.tell_of_payout_method_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  change text := private.payout_method_change(tg_op, old, new);
  described text := concat_ws(
    ' ', coalesce(new.bank_name, replace(new.type::text, '_', ' ')),
    case when new.last4 is not null then 'ending ' || new.last4 end
  );
begin
  if change is null then
    return null;
  end if;
  perform private.notify(
    new.user_id, 'payout_method.' || change,
    left(
      format(
        'Payout method %s (%s): withdrawals to it need staff approval until %s UTC. '
        || 'Not you? Contact support now.',
        change, described,
        to_char(new.cool_down_until at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
      ),
      200
    )
  );
  perform private.raise_security_alert(
    'payout_method_changed', new.user_id, 'payout_methods.' || change,
    jsonb_build_object(
      'payout_method_id', new.id, 'change', change, 'cool_down_until', new.cool_down_until
    )
  );
  return null;
end
$$;

create trigger tell_of_payout_method_change
after insert or update on public.payout_methods
for each row execute function private.tell_of_payout_method_change();

/** When the cool-down of `payout_method` ends; null when none was started. */
create or replace function private.payout_method_cool_down_until(payout_method uuid)
returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (select pm.cool_down_until from public.payout_methods as pm where pm.id = payout_method);
end
$$;

grant execute on function private.payout_method_cool_down_until(uuid) to payment_service;
