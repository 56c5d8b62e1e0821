-- Every charge, refund, payout, fee and transfer the processor reports, or a user starts.
-- A user may start a charge; its status, type and processor id are the service's to set.

create type public.transaction_type as enum ('charge', 'refund', 'payout', 'fee', 'transfer');
create type public.transaction_status as enum ('pending', 'succeeded', 'failed', 'canceled');

create table public.payment_transactions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id),
  payment_method_id uuid references public.payment_methods (id) on delete set null,
  type public.transaction_type not null default 'charge',
  status public.transaction_status not null default 'pending',
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  processor_transaction_id text unique check (processor_transaction_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  description text check (char_length(description) <= 500),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.payment_transactions is
'A movement of money at the processor, in minor units of currency.';

create index payment_transactions_user_id_idx on public.payment_transactions (user_id);
create index payment_transactions_payment_method_id_idx
on public.payment_transactions (payment_method_id);

create trigger keep_row_timestamps
before insert or update on public.payment_transactions
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.payment_transactions
for each row execute function private.refuse_card_data();
