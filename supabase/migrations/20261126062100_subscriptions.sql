-- Users' subscriptions to paid plans, as the processor reports them.

create type public.subscription_status as enum (
  'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'incomplete'
);

create table public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id),
  plan text not null check (char_length(plan) between 1 and 100),
  status public.subscription_status not null,
  processor_subscription_id text not null unique
  check (processor_subscription_id ~ '^sub_[A-Za-z0-9]+$'),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  current_period_end timestamptz,
  cancel_at_period_end boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.subscriptions is 'A user''s subscription, written by payment_service.';

create index subscriptions_user_id_idx on public.subscriptions (user_id);

create trigger keep_row_timestamps
before insert or update on public.subscriptions
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.subscriptions
for each row execute function private.refuse_card_data();
