-- Disputes over a funded milestone payment. A party opens one, which puts the payment in
-- dispute; an admin resolves it.

create type public.dispute_status as enum ('open', 'resolved', 'withdrawn');
create type public.dispute_outcome as enum ('release', 'refund', 'split');

create table public.disputes (
  id uuid primary key default gen_random_uuid(),
  milestone_payment_id uuid not null references public.milestone_payments (id),
  opened_by uuid not null default auth.uid() references public.users (id),
  reason text not null check (char_length(reason) between 1 and 5000),
  status public.dispute_status not null default 'open',
  outcome public.dispute_outcome,
  -- for a split: what the payee gets; the rest goes back to the payer
  payee_share_minor bigint check (payee_share_minor > 0),
  resolution text check (char_length(resolution) <= 5000),
  resolved_by uuid references public.users (id),
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((status = 'resolved') = (outcome is not null)),
  check ((outcome = 'split') = (payee_share_minor is not null))
);

comment on table public.disputes is
'A dispute a payer or payee opened over a milestone payment, and how an admin resolved it.';

create index disputes_milestone_payment_id_idx on public.disputes (milestone_payment_id);
create index disputes_opened_by_idx on public.disputes (opened_by);
create index disputes_resolved_by_idx on public.disputes (resolved_by);
-- One open dispute per payment at a time.
create unique index disputes_one_open_per_payment_idx on public.disputes (milestone_payment_id)
where status = 'open';

create trigger keep_row_timestamps
before insert or update on public.disputes
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.disputes
for each row execute function private.refuse_card_data();

/**
 * BEFORE INSERT OR UPDATE trigger: a dispute opens as `open`, and who resolved it and when
 * are the database's to record. Security definer, because staff roles such as admin may not
 * read the `auth` schema that auth.uid() lives in.
 */
create function private.record_dispute_resolution() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.status := 'open';
    new.outcome := null;
    new.resolved_by := null;
    new.resolved_at := null;
  elsif new.status is distinct from old.status and new.status <> 'open' then
    if new.status = 'resolved' and (select auth.uid()) in (
      select unnest(array[mp.payer_id, mp.payee_id]) from public.milestone_payments as mp
      where mp.id = new.milestone_payment_id
    ) then
      raise exception 'a party to milestone payment % cannot resolve its dispute',
      new.milestone_payment_id
      using errcode = 'PT403', hint = 'another admin decides';
    end if;
    new.resolved_by := (select auth.uid());
    new.resolved_at := now();
  end if;
  return new;
end
$$;

revoke all on function private.record_dispute_resolution() from public;

create trigger record_dispute_resolution
before insert or update on public.disputes
for each row execute function private.record_dispute_resolution();

/**
 * AFTER INSERT trigger: opening a dispute puts the payment in dispute. It runs as the owner,
 * so a payee (who may not update a funded payment) can open one too; the transition trigger
 * still checks that the requesting user is a party and that the payment is funded.
 */
create function private.dispute_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.milestone_payments
  set status = 'disputed'
  where id = new.milestone_payment_id;
  return new;
end
$$;

revoke all on function private.dispute_milestone_payment() from public;

create trigger dispute_milestone_payment
after insert on public.disputes
for each row execute function private.dispute_milestone_payment();

/**
 * True when the milestone payment has an open dispute that the caller may see. Security
 * invoker: it reads disputes under the caller's row-level security, so it tells a party
 * about their own payments and a stranger nothing.
 */
create function private.has_open_dispute(milestone_payment uuid) returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (
    select from public.disputes as d
    where d.milestone_payment_id = milestone_payment and d.status = 'open'
  )
$$;

revoke all on function private.has_open_dispute(uuid) from public;
