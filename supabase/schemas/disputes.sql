-- Disputes
--
-- Disputes over a funded milestone payment, opened by a party or by a chargeback, and settled
-- once by a written decision: release, refund or split.
--
-- A party opens a dispute, which puts the payment in dispute; staff who are no party to the
-- payment decide it. A chargeback's dispute is opened and decided by payment_service, from
-- the processor's events: the card issuer decides it. A dispute is settled once, with a
-- written reason, by exactly the decision made, and then never changes; for every role and
-- path (resolve_dispute, an update of the dispute, an update of the payment, the tables'
-- owner):
--   * a closed dispute (resolved or withdrawn) never changes and is never deleted (PT409).
--     A correction of settled money is a correcting ledger transfer, never an edit of the
--     decision; a settled payment cannot be disputed again (its transitions end there);
--   * closing a dispute needs a written resolution (private.is_written, PT422); it is kept
--     in the row, and so in the audit row of the update. A disputed payment settled
--     directly (escrow_service or an admin updating the payment) closes its open dispute
--     with that dispute's written resolution, so the resolution is written on the dispute
--     first;
--   * resolving a dispute settles its payment in the same statement, as the outcome says,
--     through the payment's own transition rules (who, no party, a frozen escrow): the
--     record and the ledger cannot disagree;
--   * a split posts the share of the dispute being resolved, named for that statement only
--     in the setting payguard.settling_dispute; a payment is split by nothing else (an
--     update of the payment to split is refused, PT422);
--   * who may act comes first: a party to the payment (an admin who is its payer or payee)
--     is refused (PT403) before anything about the dispute's state is said.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/disputes.toml, tests/sql/disputes/

set local check_function_bodies = off;

-- Section: disputes

create type public.dispute_status as enum ('open', 'resolved', 'withdrawn');

create type public.dispute_outcome as enum ('release', 'refund', 'split');

create table public.disputes (
  id uuid not null default gen_random_uuid(),
  milestone_payment_id uuid not null,
  opened_by uuid not null default auth.uid(),
  reason text not null,
  status public.dispute_status not null default 'open',
  -- The decision: set exactly when the dispute is resolved.
  outcome public.dispute_outcome,
  -- for a split: what the payee gets; the rest goes back to the payer
  payee_share_minor bigint,
  -- Why it was closed, in words (disputes_closed_with_resolution_check below).
  resolution text,
  -- Who closed it and when: the database's to record.
  resolved_by uuid,
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- For a chargeback: the processor's dispute; null for a party's dispute.
  processor_dispute_id text,
  constraint disputes_pkey primary key (id),
  constraint disputes_milestone_payment_id_fkey foreign key (milestone_payment_id)
  references public.milestone_payments (id),
  constraint disputes_opened_by_fkey foreign key (opened_by) references public.users (id),
  constraint disputes_reason_check check (char_length(reason) between 1 and 5000),
  constraint disputes_payee_share_minor_check check (payee_share_minor > 0),
  constraint disputes_resolution_check check (char_length(resolution) <= 5000),
  constraint disputes_resolved_by_fkey foreign key (resolved_by) references public.users (id),
  constraint disputes_processor_dispute_id_key unique (processor_dispute_id),
  constraint disputes_processor_dispute_id_check
  check (processor_dispute_id ~ '^(dp|du)_[A-Za-z0-9]+$'),
  constraint disputes_check check ((status = 'resolved') = (outcome is not null)),
  constraint disputes_check1 check ((outcome = 'split') = (payee_share_minor is not null))
);

-- A closed dispute carries a written resolution. Not valid: disputes closed before a
-- written resolution was asked for stay as they were recorded.
alter table public.disputes
add constraint disputes_closed_with_resolution_check check (
  status = 'open' or private.is_written(resolution, 5000)
) not valid;

comment on table public.disputes is
'A dispute a payer or payee opened over a milestone payment, and how an admin resolved it.';

create index disputes_milestone_payment_id_idx on public.disputes (milestone_payment_id);

create index disputes_opened_by_idx on public.disputes (opened_by);

create index disputes_resolved_by_idx on public.disputes (resolved_by);

-- One open dispute per payment at a time: every open dispute of a payment has the key
-- (payment, null), which NULLS NOT DISTINCT makes conflict; a closed one is keyed by its own
-- id. Not a partial index, for the planner's sake (see
-- milestone_payments_one_live_per_milestone_key in escrow_and_milestone_payments.sql).
create unique index disputes_one_open_per_payment_key
on public.disputes (
  milestone_payment_id, (case when status <> 'open' then id end)
) nulls not distinct;

create trigger keep_row_timestamps
before insert or update on public.disputes
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.disputes
for each row execute function private.staff_writes_need_mfa();

-- The columns listed cannot hold card data; every other one is read.
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

grant execute on function private.has_open_dispute(uuid) to admin;
grant execute on function private.has_open_dispute(uuid) to authenticated;
grant execute on function private.has_open_dispute(uuid) to escrow_service;
grant execute on function private.has_open_dispute(uuid) to payment_service;

-- Section: opening and deciding a dispute
--
-- The BEFORE triggers fire in name order: keep_chargebacks_to_the_processor (who may touch a
-- chargeback), then record_dispute_resolution (who, whether, what for every dispute).

/**
 * BEFORE INSERT OR UPDATE trigger on disputes. A dispute opens undecided. An update is
 * checked in the order who (never a party to the payment), whether (a closed dispute never
 * changes), what (no share while undecided; a resolution that private.is_written accepts to
 * close it); who closed it and when are the database's to record. Security definer, because
 * staff roles such as admin may not read the `auth` schema that auth.uid() lives in.
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

create trigger record_dispute_resolution
before insert or update on public.disputes
for each row execute function private.record_dispute_resolution();

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

create trigger keep_chargebacks_to_the_processor
before insert or update on public.disputes
for each row execute function private.keep_chargebacks_to_the_processor();

/**
 * AFTER INSERT trigger on disputes: opening a party's dispute disputes its payment, as the
 * party. A chargeback's dispute does not: payment_service disputes the payment itself, in
 * the same transaction, so that the transition trigger sees payment_service as the actor.
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

create trigger dispute_milestone_payment
after insert on public.disputes
for each row execute function private.dispute_milestone_payment();

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

create trigger settle_disputed_milestone_payment
after update of status on public.disputes
for each row when (old.status is distinct from new.status and new.status = 'resolved')
execute function private.settle_disputed_milestone_payment();

/**
 * BEFORE DELETE trigger on disputes: a closed dispute is a settled record and is never
 * deleted, by any role (no API role may delete disputes at all; this holds the tables' owner
 * too), but by the retention purge seven years after its last change
 * (private.purging_closed_records, transactions.sql).
 */
create or replace function private.keep_closed_disputes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status <> 'open' and not private.purging_closed_records(old.updated_at) then
    raise exception 'dispute % is %: a closed dispute is never deleted', old.id, old.status
    using errcode = 'PT409';
  end if;
  return old;
end
$$;

create trigger keep_closed_disputes
before delete on public.disputes
for each row execute function private.keep_closed_disputes();
