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

comment on table public.payment_methods is
'A user''s saved payment method: Stripe references, brand, last4 and expiry. No card data.';

create index payment_methods_user_id_idx on public.payment_methods (user_id);
create unique index payment_methods_one_default_idx on public.payment_methods (user_id)
where is_default;

create trigger keep_row_timestamps
before insert or update on public.payment_methods
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.payment_methods
for each row execute function private.refuse_card_data();

create type public.payout_method_type as enum ('bank_account', 'debit_card');

create table public.payout_methods (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id) on delete cascade,
  type public.payout_method_type not null,
  processor text not null default 'stripe' check (processor = 'stripe'),
  processor_account_id text not null check (processor_account_id ~ '^acct_[A-Za-z0-9]{6,}$'),
  processor_external_account_id text not null unique
  check (processor_external_account_id ~ '^(ba|card)_[A-Za-z0-9]{6,}$'),
  bank_name text check (char_length(bank_name) <= 100),
  last4 char(4) check (last4 ~ '^[0-9]{4}$'),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  nickname text check (char_length(nickname) <= 100),
  is_default boolean not null default false,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.payout_methods is
'Where a contractor''s money goes: a Stripe external account of their connected account.';

create index payout_methods_user_id_idx on public.payout_methods (user_id);
create unique index payout_methods_one_default_idx on public.payout_methods (user_id)
where is_default;

create trigger keep_row_timestamps
before insert or update on public.payout_methods
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.payout_methods
for each row execute function private.refuse_card_data();

/** True when the requesting user owns the payment method. */
create function private.owns_payment_method(payment_method uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.payment_methods as m
    where m.id = payment_method and m.user_id = (select auth.uid())
  )
$$;

/** True when the requesting user owns the payout method. */
create function private.owns_payout_method(payout_method uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.payout_methods as m
    where m.id = payout_method and m.user_id = (select auth.uid())
  )
$$;

revoke all on function private.owns_payment_method(uuid) from public;
revoke all on function private.owns_payout_method(uuid) from public;
grant execute on function private.owns_payment_method(uuid) to authenticated;
grant execute on function private.owns_payout_method(uuid) to authenticated;
