-- Disputes
--
-- Disputes over a funded milestone payment, opened by a party or by a chargeback, and settled
-- once by a written decision: release, refund or split.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/disputes.toml, tests/sql/disputes/

set local check_function_bodies = off;

-- Disputes over a funded milestone payment. A party opens one, which puts the payment in
-- dispute; an admin resolves it.
create type public.dispute_status as enum ('open', 'resolved', 'withdrawn');

create type public.dispute_outcome as enum ('release', 'refund', 'split');

create table public.disputes (
  id uuid default gen_random_uuid() not null,
  milestone_payment_id uuid not null,
  opened_by uuid default auth.uid() not null,
  reason text not null,
  status dispute_status default 'open'::dispute_status not null,
  outcome dispute_outcome,
  -- for a split: what the payee gets; the rest goes back to the payer
  payee_share_minor bigint,
  resolution text,
  resolved_by uuid,
  resolved_at timestamp with time zone,
  created_at timestamp with time zone default now() not null,
  updated_at timestamp with time zone default now() not null,
  processor_dispute_id text,
  constraint disputes_pkey primary key (id),
  constraint disputes_processor_dispute_id_key unique (processor_dispute_id),
  constraint disputes_milestone_payment_id_fkey foreign key (
    milestone_payment_id
  ) references milestone_payments (id),
  constraint disputes_opened_by_fkey foreign key (opened_by) references users (id),
  constraint disputes_resolved_by_fkey foreign key (resolved_by) references users (id),
  constraint disputes_check check (((status = 'resolved'::dispute_status) = (outcome is not null))),
  constraint disputes_check1 check (
    ((outcome = 'split'::dispute_outcome) = (payee_share_minor is not null))
  ),
  constraint disputes_payee_share_minor_check check ((payee_share_minor > 0)),
  constraint disputes_processor_dispute_id_check check (
    (processor_dispute_id ~ '^(dp|du)_[A-Za-z0-9]+$'::text)
  ),
  constraint disputes_reason_check check ((
    (char_length(reason) >= 1)
    and (char_length(reason) <= 5000)
  )),
  constraint disputes_resolution_check check ((char_length(resolution) <= 5000))
);

alter table public.disputes
add constraint disputes_closed_with_resolution_check check ((
  (status = 'open'::dispute_status)
  or private.is_written(resolution, 5000)
)) not valid;

create index disputes_milestone_payment_id_idx on public.disputes (milestone_payment_id);

create index disputes_opened_by_idx on public.disputes (opened_by);

create index disputes_resolved_by_idx on public.disputes (resolved_by);

create unique index disputes_one_open_per_payment_key
on public.disputes (
  milestone_payment_id, (case when status <> 'open' then id end)
) nulls not distinct;

/**
 * BEFORE INSERT OR UPDATE trigger on disputes, as in 20261204232400_dispute_settlement.sql:
 * who, whether, what; closing one needs a resolution that private.is_written accepts.
 */
create or replace function private.record_dispute_resolution() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.status := 'open';
    new.outcome := null;
    new.payee_share_minor := null;
    new.resolution := null;
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if (select auth.uid()) in (
    select unnest(array[mp.payer_id, mp.payee_id]) from public.milestone_payments as mp
    where mp.id = old.milestone_payment_id
  ) then
    raise exception 'a party to milestone payment % cannot resolve its dispute',
    old.milestone_payment_id
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if (new.id, new.milestone_payment_id, new.opened_by, new.reason)
    is distinct from (old.id, old.milestone_payment_id, old.opened_by, old.reason) then
    raise exception 'dispute %: its id, its payment, who opened it and why never change', old.id
    using errcode = 'PT409';
  end if;
  if old.status <> 'open' then
    raise exception 'dispute % is %: a closed dispute never changes', old.id, old.status
    using errcode = 'PT409',
    hint = 'its decision stands: a correction of the money is a correcting ledger transfer';
  end if;
  if new.status <> 'resolved' and new.payee_share_minor is not null then
    raise exception 'dispute %: the payee''s share is recorded only by resolving it as a split',
    old.id
    using errcode = 'PT422';
  end if;
  if new.status = 'open' then
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if not private.is_written(new.resolution, 5000) then
    raise exception 'closing dispute % needs a written resolution of 10 to 5000 characters',
    old.id
    using errcode = 'PT422',
    hint = 'say why, in words (white space, invisible characters and punctuation alone do not '
    || 'count): the resolution is kept with the decision and in the audit trail (to settle '
    || 'its payment directly, write it on the dispute first)';
  end if;
  new.resolved_by := (select auth.uid());
  new.resolved_at := now();
  return new;
end
$$;

/**
 * Opening a party's dispute disputes its payment, as the party. A chargeback's dispute does
 * not: payment_service disputes the payment itself, in the same transaction, so that the
 * transition trigger sees payment_service as the actor.
 */
create or replace function private.dispute_milestone_payment() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.processor_dispute_id is null then
    update public.milestone_payments
    set status = 'disputed'
    where id = new.milestone_payment_id;
  end if;
  return new;
end
$$;

/**
 * True when the milestone payment has an open dispute that the caller may see. Security
 * invoker: it reads disputes under the caller's row-level security, so it tells a party
 * about their own payments and a stranger nothing.
 */
create or replace function private.has_open_dispute(milestone_payment uuid) returns boolean
language plpgsql
stable
set search_path = ''
as $$
begin
  return (
    select exists (
      select from public.disputes as d
      where d.milestone_payment_id = milestone_payment and d.status = 'open'
    )
  );
end
$$;

/**
 * BEFORE DELETE trigger on disputes: a closed dispute is a settled record and is never
 * deleted, by any role (no API role may delete disputes at all; this holds the tables' owner
 * too).
 */
create or replace function private.keep_closed_disputes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status <> 'open' then
    raise exception 'dispute % is %: a closed dispute is never deleted', old.id, old.status
    using errcode = 'PT409';
  end if;
  return old;
end
$$;

/**
 * AFTER UPDATE trigger on disputes, when one is resolved: its payment is settled in the same
 * statement, as the outcome says. Security invoker, so that the payment moves as the role
 * that resolved the dispute, under the payment's own rules. For the statement's length,
 * payguard.settling_dispute names this dispute: a split posts exactly its share. A payment
 * already settled with the same outcome (settled directly, which closes its dispute) is
 * left as it is; any other state refuses the resolution.
 */
create or replace function private.settle_disputed_milestone_payment() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  settled public.milestone_payment_status := case new.outcome
    when 'release' then 'released' when 'refund' then 'refunded' else 'split'
  end::public.milestone_payment_status;
  moved integer;
  payment_status public.milestone_payment_status;
begin
  perform set_config('payguard.settling_dispute', new.id::text, true);
  update public.milestone_payments as mp set status = settled
  where mp.id = new.milestone_payment_id and mp.status = 'disputed';
  get diagnostics moved = row_count;
  perform set_config('payguard.settling_dispute', '', true);
  if moved = 0 then
    select mp.status into payment_status from public.milestone_payments as mp
    where mp.id = new.milestone_payment_id;
    if payment_status is distinct from settled then
      raise exception 'dispute % cannot be resolved: milestone payment % is %, not in dispute',
      new.id, new.milestone_payment_id, payment_status
      using errcode = 'PT409';
    end if;
  end if;
  return null;
end
$$;

/**
 * A chargeback's dispute is opened and closed by payment_service alone (the card issuer
 * decides it, and the processor reports the decision); a party's dispute is never one
 * (its processor dispute id is set only when payment_service opens it).
 */
create or replace function private.keep_chargebacks_to_the_processor() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if new.processor_dispute_id is not null and current_user <> 'payment_service' then
      raise exception 'a chargeback''s dispute is opened only from the processor''s event'
      using errcode = 'PT403';
    end if;
    return new;
  end if;
  if new.processor_dispute_id is distinct from old.processor_dispute_id then
    raise exception 'dispute %: its processor dispute id never changes', old.id
    using errcode = 'PT409';
  end if;
  if old.processor_dispute_id is not null and new.status is distinct from old.status
    and current_user <> 'payment_service' then
    raise exception 'dispute % is chargeback %: the card issuer decides it, and the processor '
    'reports the decision', old.id, old.processor_dispute_id
    using errcode = 'PT403';
  end if;
  return new;
end
$$;

comment on table public.disputes is
'A dispute a payer or payee opened over a milestone payment, and how an admin resolved it.';

-- Triggers

create trigger dispute_milestone_payment
after insert on public.disputes
for each row execute function private.dispute_milestone_payment();

create trigger keep_chargebacks_to_the_processor
before insert or update on public.disputes
for each row execute function private.keep_chargebacks_to_the_processor();

create trigger keep_closed_disputes
before delete on public.disputes
for each row execute function private.keep_closed_disputes();

create trigger keep_row_timestamps
before insert or update on public.disputes
for each row execute function private.keep_row_timestamps();

create trigger record_dispute_resolution
before insert or update on public.disputes
for each row execute function private.record_dispute_resolution();

create trigger refuse_card_data
before insert or update
on public.disputes
for each row
execute function private.refuse_card_data(
  'id',
  'milestone_payment_id',
  'opened_by',
  'status',
  'outcome',
  'resolved_by',
  'resolved_at',
  'created_at',
  'updated_at'
);

create trigger settle_disputed_milestone_payment
after update of status on public.disputes
for each row when (old.status is distinct from new.status and new.status = 'resolved')
execute function private.settle_disputed_milestone_payment();

-- Privileges

grant execute on function private.has_open_dispute(uuid) to admin;
grant execute on function private.has_open_dispute(uuid) to authenticated;
grant execute on function private.has_open_dispute(uuid) to escrow_service;
grant execute on function private.has_open_dispute(uuid) to payment_service;
