-- Escrow: the homeowner's money held for a project, and the payment of each milestone out of
-- it. A client names only the milestone it pays; who pays, who is paid, how much and in
-- which currency come from the project and the milestone, never from the request.

create type public.escrow_status as enum ('open', 'frozen', 'closed');

create table public.escrow_accounts (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null default auth.uid() references public.users (id),
  project_id uuid not null references public.projects (id),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  balance_minor bigint not null default 0 check (balance_minor >= 0),
  status public.escrow_status not null default 'open',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (project_id, currency)
);

comment on table public.escrow_accounts is
'The escrow of a project, held for its owner (user_id). The balance is the ledger''s to set.';
comment on column public.escrow_accounts.balance_minor is
'Derived from the ledger; no user may write it.';

create index escrow_accounts_user_id_idx on public.escrow_accounts (user_id);

create trigger keep_row_timestamps
before insert or update on public.escrow_accounts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.escrow_accounts
for each row execute function private.refuse_card_data();

create type public.milestone_payment_status as enum (
  'pending', 'funded', 'released', 'disputed', 'refunded', 'canceled', 'split'
);

create table public.milestone_payments (
  id uuid primary key default gen_random_uuid(),
  milestone_id uuid not null references public.project_milestones (id),
  escrow_account_id uuid references public.escrow_accounts (id),
  payer_id uuid not null default auth.uid() references public.users (id),
  payee_id uuid not null references public.users (id),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  status public.milestone_payment_status not null default 'pending',
  processor_payment_intent_id text unique check (processor_payment_intent_id ~ '^pi_[A-Za-z0-9]+$'),
  funded_at timestamptz,
  released_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (payer_id <> payee_id)
);

comment on table public.milestone_payments is
'The payment of one milestone: pending, funded into escrow, then released, disputed, refunded '
'or canceled, along the transitions the trigger milestone_payment_transition allows.';

create index milestone_payments_milestone_id_idx on public.milestone_payments (milestone_id);
create index milestone_payments_escrow_account_id_idx
on public.milestone_payments (escrow_account_id);
create index milestone_payments_payer_id_idx on public.milestone_payments (payer_id);
create index milestone_payments_payee_id_idx on public.milestone_payments (payee_id);
-- A milestone is paid once: at most one payment that is not canceled or refunded.
create unique index milestone_payments_one_live_per_milestone_idx
on public.milestone_payments (milestone_id)
where status not in ('canceled', 'refunded');

create trigger keep_row_timestamps
before insert or update on public.milestone_payments
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.milestone_payments
for each row execute function private.refuse_card_data();

/**
 * BEFORE INSERT trigger: the payee, amount and currency of a milestone payment come from its
 * milestone and project, and a new payment is always pending. For a milestone the requester
 * does not own it derives nothing and says nothing, so that the row-level security check
 * refuses it like any other: a stranger learns neither that the milestone exists nor
 * anything about its project.
 */
create function private.derive_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  milestone record;
begin
  select m.amount_minor, m.currency, p.contractor_id, p.owner_id, p.id as project_id
  into milestone
  from public.project_milestones as m
  join public.projects as p on p.id = m.project_id
  where m.id = new.milestone_id;
  if not found then
    return new;
  end if;
  if milestone.contractor_id is null then
    if milestone.owner_id is distinct from (select auth.uid()) then
      return new;
    end if;
    raise exception 'milestone % belongs to a project with no contractor to pay',
    new.milestone_id
    using errcode = 'PT422', hint = 'assign the project''s contractor first';
  end if;
  new.payee_id := milestone.contractor_id;
  new.amount_minor := milestone.amount_minor;
  new.currency := milestone.currency;
  new.status := 'pending';
  new.funded_at := null;
  new.released_at := null;
  if new.escrow_account_id is null then
    select e.id into new.escrow_account_id
    from public.escrow_accounts as e
    where e.project_id = milestone.project_id and e.currency = milestone.currency
      and e.status = 'open';
  end if;
  return new;
end
$$;

revoke all on function private.derive_milestone_payment() from public;

create trigger derive_milestone_payment
before insert on public.milestone_payments
for each row execute function private.derive_milestone_payment();

/** True when the requesting user owns the project of the milestone. */
create function private.owns_milestone(milestone uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.project_milestones as m
    join public.projects as p on p.id = m.project_id
    where m.id = milestone and p.owner_id = (select auth.uid())
  )
$$;

/** True when the requesting user is the payer or the payee of the milestone payment. */
create function private.is_milestone_payment_party(milestone_payment uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.milestone_payments as mp
    where mp.id = milestone_payment and (select auth.uid()) in (mp.payer_id, mp.payee_id)
  )
$$;

revoke all on function private.owns_milestone(uuid) from public;
revoke all on function private.is_milestone_payment_party(uuid) from public;
grant execute on function private.owns_milestone(uuid) to authenticated;
grant execute on function private.is_milestone_payment_party(uuid) to authenticated;
