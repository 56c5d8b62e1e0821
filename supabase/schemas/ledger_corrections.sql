-- Ledger corrections
--
-- A lever of the incident plan: an admin corrects a ledger balance by proposing a transfer
-- between two ledger accounts, and a second, distinct admin approves it; only then is it
-- posted, as a new balanced transfer (code and reference type `ledger_correction`, reference
-- id the correction's). Past transfers and entries are never changed: the ledger refuses
-- that (ledger.sql, private.refuse_ledger_rewrite). A correction moves money under the
-- ledger's own rules: both accounts hold its currency, and no wallet or escrow account is
-- overdrawn.
--
--   proposed -> posted     another admin approves it, with a written reason: the transfer
--                          is posted in the same transaction
--   proposed -> rejected   another admin rejects it, with a written reason
--   proposed -> withdrawn  its proposer withdraws it, with a written reason
--
-- A decided correction never changes. Every write needs aal2 (private.staff_writes_need_mfa)
-- and is audited (audit_capture.sql). Admins call the RPCs below; the rules live on the
-- table, so a direct write meets them too.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/ledger_corrections.toml, tests/sql/ledger_corrections/

set local check_function_bodies = off;

create table public.ledger_corrections (
  id uuid not null default gen_random_uuid(),
  -- The account the money leaves (debited) and the one it reaches (credited).
  debit_account_id uuid not null,
  credit_account_id uuid not null,
  amount_minor bigint not null,
  currency char(3) not null,
  reason text not null,
  proposed_by uuid not null default auth.uid(),
  status text not null default 'proposed',
  -- Who approved, rejected or withdrew it, why, and when: set by the decision.
  decided_by uuid,
  decision_reason text,
  decided_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint ledger_corrections_pkey primary key (id),
  constraint ledger_corrections_debit_account_id_fkey foreign key (debit_account_id)
  references private.ledger_accounts (id),
  constraint ledger_corrections_credit_account_id_fkey foreign key (credit_account_id)
  references private.ledger_accounts (id),
  constraint ledger_corrections_proposed_by_fkey foreign key (proposed_by)
  references public.users (id),
  constraint ledger_corrections_decided_by_fkey foreign key (decided_by)
  references public.users (id),
  constraint ledger_corrections_amount_minor_check check (amount_minor > 0),
  constraint ledger_corrections_currency_check check (currency ~ '^[A-Z]{3}$'),
  constraint ledger_corrections_two_accounts check (debit_account_id <> credit_account_id),
  constraint ledger_corrections_reason_check check (private.is_written(reason, 2000)),
  constraint ledger_corrections_status_check check (
    status in ('proposed', 'posted', 'rejected', 'withdrawn')
  ),
  constraint ledger_corrections_decision_check check (
    (status = 'proposed') = (decided_by is null)
    and (status = 'proposed') = (decided_at is null)
    and (status = 'proposed') = (decision_reason is null)
  ),
  constraint ledger_corrections_decision_reason_check check (
    decision_reason is null or private.is_written(decision_reason, 2000)
  ),
  -- Dual control: the proposer withdraws; only another admin approves or rejects.
  constraint ledger_corrections_dual_control check (
    (status = 'withdrawn') = (decided_by = proposed_by)
  )
);

comment on table public.ledger_corrections is
'Correcting transfers between ledger accounts, under dual control: one admin proposes, '
'another approves (the transfer is then posted) or rejects; the proposer may withdraw.';

comment on column public.ledger_corrections.reason is
'Why the proposer asks for the correction, in their own words: 10 to 2000 characters.';

comment on column public.ledger_corrections.decision_reason is
'Why the correction was approved, rejected or withdrawn, in words: 10 to 2000 characters.';

create index ledger_corrections_debit_account_id_idx
on public.ledger_corrections (debit_account_id);

create index ledger_corrections_credit_account_id_idx
on public.ledger_corrections (credit_account_id);

create index ledger_corrections_proposed_by_idx on public.ledger_corrections (proposed_by);

create index ledger_corrections_decided_by_idx on public.ledger_corrections (decided_by);

create trigger keep_row_timestamps
before insert or update on public.ledger_corrections
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA, and a recent step-up: it moves money (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.ledger_corrections
for each row execute function private.staff_writes_need_mfa('step_up');

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.ledger_corrections
for each row
execute function private.refuse_card_data(
  'id',
  'debit_account_id',
  'credit_account_id',
  'proposed_by',
  'decided_by',
  'decided_at',
  'created_at',
  'updated_at'
);

/**
 * BEFORE INSERT OR UPDATE trigger on ledger_corrections (named to fire after the MFA and
 * card-data triggers: who first). A proposal: a positive amount between two distinct ledger
 * accounts that exist and hold its currency, with a written reason (PT422 otherwise), by an
 * admin who owns neither account (PT403). A decision: only of a proposed correction (PT409),
 * whose terms stay as proposed (PT409); posted or rejected by another admin than the
 * proposer, withdrawn by the proposer (PT403; the proposer's rejection is a withdrawal);
 * with a written reason (PT422). The decider and the time are recorded here. Security
 * definer: it reads the ledger's accounts.
 */
create or replace function private.validate_ledger_correction() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
  debit_account private.ledger_accounts;
  credit_account private.ledger_accounts;
begin
  if tg_op = 'INSERT' then
    new.status := 'proposed';
    new.decided_by := null;
    new.decision_reason := null;
    new.decided_at := null;
    if new.amount_minor is null or new.amount_minor <= 0 then
      raise exception 'a ledger correction moves a positive amount of minor units, not %',
      new.amount_minor
      using errcode = 'PT422';
    end if;
    if new.debit_account_id = new.credit_account_id then
      raise exception 'a ledger correction moves money between two accounts, not within %',
      new.debit_account_id
      using errcode = 'PT422';
    end if;
    select * into debit_account from private.ledger_accounts as a
    where a.id = new.debit_account_id;
    if not found then
      raise exception 'no ledger account % to correct from', new.debit_account_id
      using errcode = 'PT422';
    end if;
    select * into credit_account from private.ledger_accounts as a
    where a.id = new.credit_account_id;
    if not found then
      raise exception 'no ledger account % to correct to', new.credit_account_id
      using errcode = 'PT422';
    end if;
    if debit_account.currency is distinct from new.currency
      or credit_account.currency is distinct from new.currency then
      raise exception 'ledger accounts % (%) and % (%) do not both hold %',
      debit_account.id, debit_account.currency, credit_account.id, credit_account.currency,
      new.currency
      using errcode = 'PT422', hint = 'a correction moves money within one currency';
    end if;
    if requester in (debit_account.user_id, credit_account.user_id) then
      raise exception 'no one corrects their own wallet' using errcode = 'PT403';
    end if;
    if not private.is_written(new.reason, 2000) then
      raise exception 'a ledger correction needs a written reason of 10 to 2000 characters'
      using errcode = 'PT422',
      hint = 'say why the ledger is wrong and how this transfer mends it, in words (white '
      || 'space, invisible characters and punctuation alone do not count)';
    end if;
    return new;
  end if;

  if old.status <> 'proposed' then
    raise exception 'ledger correction % is % already: a decided correction never changes',
    old.id, old.status
    using errcode = 'PT409';
  end if;
  if (new.id, new.debit_account_id, new.credit_account_id, new.amount_minor, new.currency,
    new.reason, new.proposed_by)
    is distinct from (old.id, old.debit_account_id, old.credit_account_id, old.amount_minor,
      old.currency, old.reason, old.proposed_by) then
    raise exception 'the terms of ledger correction % never change', old.id
    using errcode = 'PT409', hint = 'reject or withdraw it, then propose another';
  end if;
  if new.status not in ('posted', 'rejected', 'withdrawn') then
    raise exception 'a proposed ledger correction is posted, rejected or withdrawn, not %',
    new.status
    using errcode = 'PT422';
  end if;
  if requester is null then
    raise exception 'a ledger correction is decided by an admin' using errcode = 'PT403';
  end if;
  -- Its proposer's rejection is a withdrawal.
  if new.status = 'rejected' and requester = old.proposed_by then
    new.status := 'withdrawn';
  end if;
  if new.status = 'withdrawn' and requester <> old.proposed_by then
    raise exception 'only its proposer withdraws ledger correction %', old.id
    using errcode = 'PT403', hint = 'reject it instead';
  end if;
  if new.status = 'posted' and requester = old.proposed_by then
    raise exception 'no one approves their own ledger correction'
    using errcode = 'PT403', hint = 'a second admin approves it';
  end if;
  if new.status = 'posted' and requester in (
    select a.user_id from private.ledger_accounts as a
    where a.id in (old.debit_account_id, old.credit_account_id)
  ) then
    raise exception 'no one corrects their own wallet' using errcode = 'PT403';
  end if;
  if not private.is_written(new.decision_reason, 2000) then
    raise exception 'a decision on ledger correction % needs a written reason of 10 to 2000 '
    'characters', old.id
    using errcode = 'PT422',
    hint = 'say why, in words: the reason is kept with the correction and in the audit trail';
  end if;
  new.decided_by := requester;
  new.decided_at := now();
  return new;
end
$$;

create trigger validate_ledger_correction
before insert or update on public.ledger_corrections
for each row execute function private.validate_ledger_correction();

/**
 * AFTER UPDATE trigger on ledger_corrections: an approved correction posts its transfer
 * (code and reference type ledger_correction), in the same transaction; a refused posting
 * (an overdraft: PT409) undoes the approval. Security definer: only it touches the ledger.
 */
create or replace function private.post_ledger_correction() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.ledger_transfer(
    'ledger_correction', new.debit_account_id, new.credit_account_id, new.amount_minor,
    new.currency, false, 'ledger_correction', new.id
  );
  return null;
end
$$;

create trigger post_ledger_correction
after update of status on public.ledger_corrections
for each row
when (old.status = 'proposed' and new.status = 'posted')
execute function private.post_ledger_correction();

/**
 * BEFORE DELETE trigger on ledger_corrections: a correction is a financial record, never
 * deleted, by any role (no API role may delete one at all; this holds the owner too).
 */
create or replace function private.keep_ledger_corrections() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'ledger correction % is a financial record: it is never deleted', old.id
  using errcode = 'PT409', hint = 'withdraw or reject a proposed correction instead';
end
$$;

create trigger keep_ledger_corrections
before delete on public.ledger_corrections
for each row execute function private.keep_ledger_corrections();

/** The ledger transfer that posted ledger correction `correction`; null until it is posted. */
create or replace function private.ledger_correction_transfer(correction uuid) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select t.id from private.ledger_transfers as t
    where t.reference_type = 'ledger_correction' and t.reference_id = correction
      and t.code = 'ledger_correction'
  );
end
$$;

grant execute on function private.ledger_correction_transfer(uuid) to admin;

-- Section: the RPCs
--
-- For admins at aal2, with a recent step-up (the trigger on the table refuses otherwise):
-- each answers the correction as it now is, with the transfer that posted it.

/**
 * An admin proposes moving `amount_minor` of `currency` from ledger account
 * `from_account_id` to `to_account_id`, saying why (PostgREST: /rpc/propose_ledger_correction).
 * Nothing moves until a second admin approves it.
 */
create or replace function public.propose_ledger_correction(
  from_account_id uuid,
  to_account_id uuid,
  amount_minor bigint,
  currency text,
  reason text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  if currency is null or currency !~ '^[A-Za-z]{3}$' then
    raise exception 'not an ISO 4217 currency code: %', currency using errcode = 'PT422';
  end if;
  insert into public.ledger_corrections (
    debit_account_id, credit_account_id, amount_minor, currency, reason
  )
  values (
    from_account_id, to_account_id, propose_ledger_correction.amount_minor,
    upper(propose_ledger_correction.currency), propose_ledger_correction.reason
  )
  returning to_jsonb(ledger_corrections.*) into answer;
  return answer || jsonb_build_object('transfer_id', null);
end
$$;

grant execute on function propose_ledger_correction(uuid, uuid, bigint, text, text) to admin;

/**
 * A second admin approves a proposed ledger correction, saying why: its transfer is posted
 * (PostgREST: /rpc/approve_ledger_correction). The answer names the transfer.
 */
create or replace function public.approve_ledger_correction(correction_id uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  update public.ledger_corrections as c
  set status = 'posted', decision_reason = approve_ledger_correction.reason
  where c.id = correction_id
  returning to_jsonb(c.*) into answer;
  if answer is null then
    raise exception 'no ledger correction %', correction_id using errcode = 'PT404';
  end if;
  return answer || jsonb_build_object(
    'transfer_id', private.ledger_correction_transfer(correction_id)
  );
end
$$;

grant execute on function approve_ledger_correction(uuid, text) to admin;

/**
 * Another admin rejects a proposed ledger correction, or its proposer withdraws it (the
 * answer's status says which), saying why (PostgREST: /rpc/reject_ledger_correction).
 * Nothing moves.
 */
create or replace function public.reject_ledger_correction(correction_id uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  update public.ledger_corrections as c
  set status = 'rejected', decision_reason = reject_ledger_correction.reason
  where c.id = correction_id
  returning to_jsonb(c.*) into answer;
  if answer is null then
    raise exception 'no ledger correction %', correction_id using errcode = 'PT404';
  end if;
  return answer || jsonb_build_object('transfer_id', null);
end
$$;

grant execute on function reject_ledger_correction(uuid, text) to admin;
