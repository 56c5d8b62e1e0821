-- Payment and payout methods
--
-- How users pay (payment_methods) and how contractors get paid (payout_methods): processor
-- references only, never card data.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/payment_methods.toml, policies/payout_methods.toml

set local check_function_bodies = off;

-- How users pay (payment_methods) and how contractors get paid (payout_methods).
--
-- Only the processor's references are stored, never card data: a Stripe PaymentMethod
-- (pm_…) of a Stripe Customer (cus_…), with the brand, last four digits and expiry that
-- Stripe returns. A payout method is a Stripe external account (ba_… or card_…) of a
-- connected account (acct_…).
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

create index payment_methods_user_id_idx on public.payment_methods (user_id);

create unique index payment_methods_one_default_idx on public.payment_methods (user_id)
where is_default;

create type public.payout_method_type as enum ('bank_account', 'debit_card');

create table public.payout_methods (
  id uuid default gen_random_uuid() not null,
  user_id uuid default auth.uid() not null,
  type payout_method_type not null,
  processor text default 'stripe'::text not null,
  processor_account_id text not null,
  processor_external_account_id text not null,
  bank_name text,
  last4 character(4),
  currency character(3) not null,
  nickname text,
  is_default boolean default false not null,
  metadata jsonb default '{}'::jsonb not null,
  created_at timestamp with time zone default now() not null,
  updated_at timestamp with time zone default now() not null,
  verification_status text default 'unverified'::text not null,
  constraint payout_methods_pkey primary key (id),
  constraint payout_methods_id_user_id_currency_key unique (id, user_id, currency),
  constraint payout_methods_processor_external_account_id_key unique (
    processor_external_account_id
  ),
  constraint payout_methods_user_id_fkey foreign key (user_id) references users (
    id
  ) on delete cascade,
  constraint payout_methods_bank_name_check check ((char_length(bank_name) <= 100)),
  constraint payout_methods_currency_check check ((currency ~ '^[A-Z]{3}$'::text)),
  constraint payout_methods_last4_check check ((last4 ~ '^[0-9]{4}$'::text)),
  constraint payout_methods_metadata_check check ((jsonb_typeof(metadata) = 'object'::text)),
  constraint payout_methods_nickname_check check ((char_length(nickname) <= 100)),
  constraint payout_methods_processor_account_id_check check (
    (processor_account_id ~ '^acct_[A-Za-z0-9]{6,}$'::text)
  ),
  constraint payout_methods_processor_check check ((processor = 'stripe'::text)),
  constraint payout_methods_processor_external_account_id_check check (
    (processor_external_account_id ~ '^(ba|card)_[A-Za-z0-9]{6,}$'::text)
  ),
  constraint payout_methods_verification_status_check check (
    (
      verification_status
      = any(array['unverified'::text, 'pending'::text, 'verified'::text, 'restricted'::text])
    )
  )
);

create index payout_methods_user_id_idx on public.payout_methods (user_id);

create unique index payout_methods_one_default_idx on public.payout_methods (user_id)
where is_default;

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

comment on table public.payment_methods is
'A user''s saved payment method: Stripe references, brand, last4 and expiry. No card data.';

comment on table public.payout_methods is
'Where a contractor''s money goes: a Stripe external account of their connected account.';

-- Triggers

create trigger keep_row_timestamps
before insert or update on public.payment_methods
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.payment_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at'
);

create trigger keep_row_timestamps
before insert or update on public.payout_methods
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update
on public.payout_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at'
);

-- Privileges

grant execute on function private.owns_payment_method(uuid) to authenticated;
grant execute on function private.owns_payout_method(uuid) to authenticated;
