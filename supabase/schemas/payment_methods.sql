-- Payment and payout methods
--
-- How users pay (payment_methods) and how contractors get paid (payout_methods): processor
-- references only, never card data.
--
-- Only the processor's references are stored: a Stripe PaymentMethod (pm_…) of a Stripe
-- Customer (cus_…), with the brand, last four digits and expiry that Stripe returns. A payout
-- method is a Stripe external account (ba_… or card_…) of a connected account (acct_…).
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/payment_methods.toml, policies/payout_methods.toml

set local check_function_bodies = off;

-- Section: payment methods

create type public.payment_method_type as enum (
  'credit_card', 'debit_card', 'bank_account', 'paypal', 'stripe', 'apple_pay', 'google_pay'
);

create table public.payment_methods (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id) on delete cascade,
  type public.payment_method_type not null,
  processor text not null default 'stripe' check (processor = 'stripe'),
  processor_payment_method_id text not null unique
  check (processor_payment_method_id ~ '^pm_[A-Za-z0-9]{6,}$'),
  processor_customer_id text not null check (processor_customer_id ~ '^cus_[A-Za-z0-9]{6,}$'),
  brand text check (char_length(brand) <= 32),
  last4 char(4) check (last4 ~ '^[0-9]{4}$'),
  exp_month smallint check (exp_month between 1 and 12),
  exp_year smallint check (exp_year between 2000 and 2100),
  nickname text check (char_length(nickname) <= 100),
  is_default boolean not null default false,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.payment_methods is
'A user''s saved payment method: Stripe references, brand, last4 and expiry. No card data.';

create index payment_methods_user_id_idx on public.payment_methods (user_id);

-- At most one default payment method per user.
create unique index payment_methods_one_default_idx on public.payment_methods (user_id)
where is_default;

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
  -- The user's connected account, and its external account that receives the payout.
  processor_account_id text not null,
  processor_external_account_id text not null,
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
  constraint payout_methods_pkey primary key (id),
  constraint payout_methods_user_id_fkey foreign key (user_id)
  references public.users (id) on delete cascade,
  constraint payout_methods_processor_check check (processor = 'stripe'),
  constraint payout_methods_processor_account_id_check
  check (processor_account_id ~ '^acct_[A-Za-z0-9]{6,}$'),
  constraint payout_methods_processor_external_account_id_key
  unique (processor_external_account_id),
  constraint payout_methods_processor_external_account_id_check
  check (processor_external_account_id ~ '^(ba|card)_[A-Za-z0-9]{6,}$'),
  constraint payout_methods_bank_name_check check (char_length(bank_name) <= 100),
  constraint payout_methods_last4_check check (last4 ~ '^[0-9]{4}$'),
  constraint payout_methods_currency_check check (currency ~ '^[A-Z]{3}$'),
  constraint payout_methods_nickname_check check (char_length(nickname) <= 100),
  constraint payout_methods_metadata_check check (jsonb_typeof(metadata) = 'object'),
  constraint payout_methods_verification_status_check
  check (verification_status in ('unverified', 'pending', 'verified', 'restricted')),
  -- The key a withdrawal's foreign key names: its (payout method, owner, currency) are
  -- those of one payout method (see withdrawals.sql).
  constraint payout_methods_id_user_id_currency_key unique (id, user_id, currency)
);

comment on table public.payout_methods is
'Where a contractor''s money goes: a Stripe external account of their connected account.';

create index payout_methods_user_id_idx on public.payout_methods (user_id);

-- At most one default payout method per user.
create unique index payout_methods_one_default_idx on public.payout_methods (user_id)
where is_default;

create trigger keep_row_timestamps
before insert or update on public.payout_methods
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.payout_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at'
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
