-- A contractor's request to pay out their balance to a payout method, and its processing.

create type public.withdrawal_status as enum (
  'requested', 'approved', 'processing', 'paid', 'failed', 'canceled'
);

create table public.withdrawals (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id),
  payout_method_id uuid not null references public.payout_methods (id),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  status public.withdrawal_status not null default 'requested',
  processor_payout_id text unique check (processor_payout_id ~ '^po_[A-Za-z0-9]+$'),
  failure_reason text check (char_length(failure_reason) <= 500),
  processed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.withdrawals is
'A payout of a user''s available balance to one of their payout methods.';

create index withdrawals_user_id_idx on public.withdrawals (user_id);
create index withdrawals_payout_method_id_idx on public.withdrawals (payout_method_id);

create trigger keep_row_timestamps
before insert or update on public.withdrawals
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.withdrawals
for each row execute function private.refuse_card_data();
