-- Setting changes
--
-- A lever of the incident plan: an admin changes a limit, a threshold, a hold or a fee
-- through an RPC, effective from a given time, saying why. A change that tightens a control
-- is approved at once by the admin who proposes it; one that loosens it, and any fee change,
-- waits for a second, distinct admin's approval. Each setting the database lets admins
-- change, and what is looser for it (private.setting_change_direction):
--
--   withdrawal_dual_control_threshold_minor, mfa_step_up_threshold_minor,
--   alert_amount_threshold_minor   per currency ("default" and ISO codes), positive minor
--                                  units: a higher amount (the own or else the default one,
--                                  for any currency) is looser
--   escrow_hold_seconds, payout_hold_seconds, payout_method_cool_down_seconds,
--   new_method_window_seconds      0 to 31536000 s: shorter is looser
--   step_up_window_seconds, audit_seal_alert_seconds
--                                  1 to 86400 s: longer is looser
--   velocity_limits                {low, medium, high}, each {calls 1-100000, seconds
--                                  1-86400}: more calls or a shorter window is looser
--   platform_fee                   {currency, rate_bps 0-10000, fixed_minor 0-10^12}, one
--                                  currency's row of private.fee_schedule: every change needs
--                                  two admins (a fee moves money between payees and the
--                                  platform, whichever way it moves)
--
-- A change that moves one part tighter and another looser is loosening. Any other key, or a
-- value of another type or out of range, is refused (PT422), as is a change to the value the
-- setting already has.
--
--   proposed -> approved    at once when it tightens; else by a second admin, with a reason
--   proposed, approved -> rejected    by another admin than the proposer, with a reason
--   proposed, approved -> withdrawn   by its proposer, with a reason
--   approved -> applied     by the database, once effective_from has come
--   approved -> superseded  by the database, instead of applied, when a change approved by
--                           one admin alone would by then loosen the setting (another change
--                           tightened it further meanwhile)
--
-- A change takes effect at effective_from: private.apply_due_setting_changes() applies the
-- approved changes that are due, in effective_from order, to private.settings or
-- private.fee_schedule, and records when and what value it replaced. An approval whose
-- effective_from has come applies at once, in the approving transaction; where pg_cron is
-- installed the deploy schedules the function every minute for the later ones. Readers of
-- the settings (private.setting()) are unchanged: a change is a write of the setting. Every
-- write needs aal2 and a recent step-up (private.staff_writes_need_mfa) and is audited
-- (audit_capture.sql), as are the writes of the settings and the fee schedule themselves.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/setting_changes.toml, tests/sql/setting_changes/

set local check_function_bodies = off;

create table public.setting_changes (
  id uuid not null default gen_random_uuid(),
  -- A key of private.settings, or platform_fee (a row of private.fee_schedule).
  setting_key text not null,
  new_value jsonb not null,
  -- The value when the change was proposed (null: a new fee currency).
  previous_value jsonb,
  effective_from timestamptz not null default now(),
  reason text not null,
  -- tightening (one admin), loosening or either (two admins): set when proposed.
  direction text not null,
  proposed_by uuid not null default auth.uid(),
  status text not null default 'proposed',
  approved_by uuid,
  approval_reason text,
  approved_at timestamptz,
  canceled_by uuid,
  cancel_reason text,
  canceled_at timestamptz,
  -- When the database applied it (or found it superseded), and the value it replaced.
  applied_at timestamptz,
  replaced_value jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint setting_changes_pkey primary key (id),
  constraint setting_changes_proposed_by_fkey foreign key (proposed_by)
  references public.users (id),
  constraint setting_changes_approved_by_fkey foreign key (approved_by)
  references public.users (id),
  constraint setting_changes_canceled_by_fkey foreign key (canceled_by)
  references public.users (id),
  constraint setting_changes_reason_check check (private.is_written(reason, 2000)),
  constraint setting_changes_approval_reason_check check (
    approval_reason is null or private.is_written(approval_reason, 2000)
  ),
  constraint setting_changes_cancel_reason_check check (
    cancel_reason is null or private.is_written(cancel_reason, 2000)
  ),
  constraint setting_changes_direction_check check (
    direction in ('tightening', 'loosening', 'either')
  ),
  constraint setting_changes_status_check check (
    status in ('proposed', 'approved', 'applied', 'superseded', 'rejected', 'withdrawn')
  ),
  constraint setting_changes_approval_check check (
    (status in ('approved', 'applied', 'superseded')) = (approved_by is not null)
    or (status in ('rejected', 'withdrawn'))
  ),
  constraint setting_changes_cancel_check check (
    (status in ('rejected', 'withdrawn')) = (canceled_by is not null)
  ),
  constraint setting_changes_applied_check check (
    (status in ('applied', 'superseded')) = (applied_at is not null)
  ),
  -- Dual control: a change that is not tightening is approved by another admin.
  constraint setting_changes_dual_control check (
    direction = 'tightening' or approved_by <> proposed_by
  )
);

comment on table public.setting_changes is
'Admins'' changes of limits, thresholds, holds and fees, effective from a time: one admin '
'tightens, two loosen (and change fees); the database applies each when it is due.';

comment on column public.setting_changes.reason is
'Why the proposer changes the setting, in their own words: 10 to 2000 characters.';

create index setting_changes_proposed_by_idx on public.setting_changes (proposed_by);

create index setting_changes_approved_by_idx on public.setting_changes (approved_by);

create index setting_changes_canceled_by_idx on public.setting_changes (canceled_by);

-- What private.apply_due_setting_changes() looks for.
create index setting_changes_due_idx on public.setting_changes (effective_from)
where status = 'approved';

create trigger keep_row_timestamps
before insert or update on public.setting_changes
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA, and a recent step-up (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.setting_changes
for each row execute function private.staff_writes_need_mfa('step_up');

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.setting_changes
for each row
execute function private.refuse_card_data(
  'id',
  'effective_from',
  'proposed_by',
  'approved_by',
  'approved_at',
  'canceled_by',
  'canceled_at',
  'applied_at',
  'created_at',
  'updated_at'
);

-- Section: what each setting may hold, and which way is looser

/**
 * Refuse (PT422) `value` unless it is a JSON integer from `low` to `high`, naming `what`.
 */
create or replace function private.require_whole_number(
  value jsonb, low bigint, high bigint, what text
) returns bigint
language plpgsql
immutable
set search_path = ''
as $$
begin
  if jsonb_typeof(value) is distinct from 'number' or value::text !~ '^[0-9]{1,16}$'
    or value::text::bigint not between low and high then
    raise exception '% must be a whole number from % to %, not %', what, low, high,
    coalesce(value::text, 'nothing')
    using errcode = 'PT422';
  end if;
  return value::text::bigint;
end
$$;

/**
 * Which way changing setting `setting_key` from `current_value` to `new_value` goes:
 * 'tightening', 'loosening', 'either' (a fee: two admins whichever way) or 'unchanged'.
 * Refuses (PT422) a key admins may not change and a new value of the wrong shape, type or
 * range (the table at the top of this file). A change that tightens one part and loosens
 * another is loosening.
 */
create or replace function private.setting_change_direction(
  setting_key text, current_value jsonb, new_value jsonb
) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  part text;
  looser boolean := false;
  tighter boolean := false;
  old_amount bigint;
  new_amount bigint;
  old_limit jsonb;
  new_limit jsonb;
begin
  if setting_key in (
    'withdrawal_dual_control_threshold_minor', 'mfa_step_up_threshold_minor',
    'alert_amount_threshold_minor'
  ) then
    if jsonb_typeof(new_value) is distinct from 'object' or not new_value ? 'default' then
      raise exception '% is an object of amounts per currency with a "default", not %',
      setting_key, new_value
      using errcode = 'PT422';
    end if;
    for part in select k from jsonb_object_keys(new_value) as k loop
      if part <> 'default' and part !~ '^[A-Z]{3}$' then
        raise exception '% holds amounts per ISO currency code or "default", not for %',
        setting_key, part
        using errcode = 'PT422';
      end if;
      perform private.require_whole_number(
        new_value -> part, 1, 1000000000000000, format('%s.%s', setting_key, part)
      );
    end loop;
    -- For every currency either value names (the default stands for the others): the
    -- amount it would get.
    for part in
      select k from jsonb_object_keys(new_value) as k
      union
      select k from jsonb_object_keys(coalesce(current_value, '{}')) as k
    loop
      old_amount := coalesce(current_value ->> part, current_value ->> 'default')::bigint;
      new_amount := coalesce(new_value ->> part, new_value ->> 'default')::bigint;
      looser := looser or old_amount is null or new_amount > old_amount;
      tighter := tighter or new_amount < old_amount;
    end loop;
  elsif setting_key in (
    'escrow_hold_seconds', 'payout_hold_seconds', 'payout_method_cool_down_seconds',
    'new_method_window_seconds'
  ) then
    new_amount := private.require_whole_number(new_value, 0, 31536000, setting_key);
    old_amount := (current_value #>> '{}')::bigint;
    looser := old_amount is null or new_amount < old_amount;
    tighter := new_amount > old_amount;
  elsif setting_key in ('step_up_window_seconds', 'audit_seal_alert_seconds') then
    new_amount := private.require_whole_number(new_value, 1, 86400, setting_key);
    old_amount := (current_value #>> '{}')::bigint;
    looser := old_amount is null or new_amount > old_amount;
    tighter := new_amount < old_amount;
  elsif setting_key = 'velocity_limits' then
    if jsonb_typeof(new_value) is distinct from 'object'
      or (select array_agg(k order by k) from jsonb_object_keys(new_value) as k)
      is distinct from array['high', 'low', 'medium'] then
      raise exception 'velocity_limits holds exactly the levels low, medium and high, not %',
      new_value
      using errcode = 'PT422';
    end if;
    foreach part in array array['low', 'medium', 'high'] loop
      new_limit := new_value -> part;
      old_limit := current_value -> part;
      if jsonb_typeof(new_limit) is distinct from 'object'
        or (select array_agg(k order by k) from jsonb_object_keys(new_limit) as k)
        is distinct from array['calls', 'seconds'] then
        raise exception 'velocity_limits.% holds exactly calls and seconds, not %',
        part, new_limit
        using errcode = 'PT422';
      end if;
      new_amount := private.require_whole_number(
        new_limit -> 'calls', 1, 100000, format('velocity_limits.%s.calls', part)
      );
      perform private.require_whole_number(
        new_limit -> 'seconds', 1, 86400, format('velocity_limits.%s.seconds', part)
      );
      looser := looser or old_limit is null
        or new_amount > (old_limit ->> 'calls')::bigint
        or (new_limit ->> 'seconds')::bigint < (old_limit ->> 'seconds')::bigint;
      tighter := tighter or new_amount < (old_limit ->> 'calls')::bigint
        or (new_limit ->> 'seconds')::bigint > (old_limit ->> 'seconds')::bigint;
    end loop;
  elsif setting_key = 'platform_fee' then
    if jsonb_typeof(new_value) is distinct from 'object'
      or (select array_agg(k order by k) from jsonb_object_keys(new_value) as k)
      is distinct from array['currency', 'fixed_minor', 'rate_bps']
      or jsonb_typeof(new_value -> 'currency') is distinct from 'string'
      or new_value ->> 'currency' !~ '^[A-Z]{3}$' then
      raise exception 'platform_fee is {"currency": an ISO code, "rate_bps": ..., '
      '"fixed_minor": ...}, not %', new_value
      using errcode = 'PT422';
    end if;
    perform private.require_whole_number(new_value -> 'rate_bps', 0, 10000, 'platform_fee.rate_bps');
    perform private.require_whole_number(
      new_value -> 'fixed_minor', 0, 1000000000000, 'platform_fee.fixed_minor'
    );
    if new_value is not distinct from current_value then
      return 'unchanged';
    end if;
    return 'either';
  else
    raise exception 'admins do not change setting % through a setting change', setting_key
    using errcode = 'PT422',
    hint = 'the settings they change: withdrawal_dual_control_threshold_minor, '
    || 'mfa_step_up_threshold_minor, alert_amount_threshold_minor, escrow_hold_seconds, '
    || 'payout_hold_seconds, payout_method_cool_down_seconds, new_method_window_seconds, '
    || 'step_up_window_seconds, audit_seal_alert_seconds, velocity_limits, platform_fee';
  end if;
  if looser then
    return 'loosening';
  elsif tighter then
    return 'tightening';
  end if;
  return 'unchanged';
end
$$;

/**
 * The value a setting change of `setting_key` to `new_value` replaces, now: the setting's,
 * or for platform_fee the fee schedule's row of the new value's currency as
 * {currency, rate_bps, fixed_minor} (null when the currency has none). Security definer:
 * admins read neither table.
 */
create or replace function private.setting_change_current(setting_key text, new_value jsonb)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if setting_key = 'platform_fee' then
    return (
      select jsonb_build_object(
        'currency', f.currency, 'rate_bps', f.rate_bps, 'fixed_minor', f.fixed_minor
      )
      from private.fee_schedule as f where f.currency = new_value ->> 'currency'
    );
  end if;
  return (select s.value from private.settings as s where s.key = setting_key);
end
$$;

-- Section: the rules of a change

/**
 * BEFORE INSERT OR UPDATE trigger on setting_changes (named to fire after the MFA and
 * card-data triggers: who first). Security definer: it reads the settings and the fees.
 *
 * A proposal: a setting admins change, a valid value that differs from the current one
 * (PT422, private.setting_change_direction), a written reason (PT422). Its direction and the
 * value it replaces are recorded; a tightening change is approved by its proposer at once.
 * A decision by an admin: approval of a proposed change by another admin than the proposer
 * (PT403); rejection of a proposed or approved change by another admin, withdrawal by the
 * proposer (PT403; the proposer's rejection is a withdrawal); each with a written reason
 * (PT422); the terms never change, and a change applied, superseded, rejected or withdrawn
 * is settled (PT409). Only the database applies a change: it records applied_at, a column
 * that no API role may write (PT403 for a move to applied or superseded without it).
 */
create or replace function private.validate_setting_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
begin
  if tg_op = 'INSERT' then
    new.previous_value := private.setting_change_current(new.setting_key, new.new_value);
    new.direction := private.setting_change_direction(
      new.setting_key, new.previous_value, new.new_value
    );
    if new.direction = 'unchanged' then
      raise exception 'setting % already is %', new.setting_key, new.new_value
      using errcode = 'PT422';
    end if;
    if not private.is_written(new.reason, 2000) then
      raise exception 'a setting change needs a written reason of 10 to 2000 characters'
      using errcode = 'PT422',
      hint = 'say why the setting must change, in words (white space, invisible characters '
      || 'and punctuation alone do not count)';
    end if;
    new.effective_from := coalesce(new.effective_from, now());
    new.approval_reason := null;
    new.canceled_by := null;
    new.cancel_reason := null;
    new.canceled_at := null;
    new.applied_at := null;
    new.replaced_value := null;
    if new.direction = 'tightening' then
      new.status := 'approved';
      new.approved_by := new.proposed_by;
      new.approved_at := now();
    else
      new.status := 'proposed';
      new.approved_by := null;
      new.approved_at := null;
    end if;
    return new;
  end if;

  if old.status in ('applied', 'superseded', 'rejected', 'withdrawn') then
    raise exception 'setting change % is % already: it never changes', old.id, old.status
    using errcode = 'PT409';
  end if;
  if (new.id, new.setting_key, new.new_value, new.previous_value, new.effective_from,
    new.reason, new.direction, new.proposed_by, new.created_at)
    is distinct from (old.id, old.setting_key, old.new_value, old.previous_value,
      old.effective_from, old.reason, old.direction, old.proposed_by, old.created_at) then
    raise exception 'the terms of setting change % never change', old.id
    using errcode = 'PT409', hint = 'withdraw or reject it, then propose another';
  end if;
  if new.status in ('applied', 'superseded') then
    if old.status <> 'approved' or new.applied_at is null then
      raise exception 'a setting change is applied by the database when it is due'
      using errcode = 'PT403';
    end if;
    return new;
  end if;
  if requester is null then
    raise exception 'a setting change is decided by an admin' using errcode = 'PT403';
  end if;
  -- Its proposer's rejection is a withdrawal.
  if new.status = 'rejected' and requester = old.proposed_by then
    new.status := 'withdrawn';
  end if;
  if new.status = 'approved' and old.status = 'proposed' then
    if requester = old.proposed_by then
      raise exception 'no one approves their own setting change'
      using errcode = 'PT403', hint = 'a second admin approves a change that loosens a control';
    end if;
    if not private.is_written(new.approval_reason, 2000) then
      raise exception 'an approval of setting change % needs a written reason of 10 to 2000 '
      'characters', old.id
      using errcode = 'PT422';
    end if;
    new.approved_by := requester;
    new.approved_at := now();
    return new;
  end if;
  if new.status in ('rejected', 'withdrawn') then
    if new.status = 'withdrawn' and requester <> old.proposed_by then
      raise exception 'only its proposer withdraws setting change %', old.id
      using errcode = 'PT403', hint = 'reject it instead';
    end if;
    if not private.is_written(new.cancel_reason, 2000) then
      raise exception 'a rejection or withdrawal of setting change % needs a written reason of '
      '10 to 2000 characters', old.id
      using errcode = 'PT422';
    end if;
    new.canceled_by := requester;
    new.canceled_at := now();
    return new;
  end if;
  raise exception 'setting change % cannot go from % to %', old.id, old.status, new.status
  using errcode = 'PT409';
end
$$;

create trigger validate_setting_change
before insert or update on public.setting_changes
for each row execute function private.validate_setting_change();

/**
 * BEFORE DELETE trigger on setting_changes: the history of changes is kept, by every role
 * (no API role may delete one at all; this holds the owner too).
 */
create or replace function private.keep_setting_changes() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'setting change % is part of the settings'' history: it is never deleted',
  old.id
  using errcode = 'PT409', hint = 'withdraw or reject a change that is not applied instead';
end
$$;

create trigger keep_setting_changes
before delete on public.setting_changes
for each row execute function private.keep_setting_changes();

-- Section: applying the changes that are due

/**
 * Apply every approved setting change whose effective_from has come, in effective_from
 * order: write the setting (or the fee schedule's row), and record the change as applied,
 * with the time and the value it replaced. A change approved by its proposer alone (a
 * tightening) that would by then loosen the setting is recorded as superseded instead, and
 * nothing is written. Returns how many changes it settled. Security definer: it writes the
 * settings, which no API role may.
 */
create or replace function private.apply_due_setting_changes() returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  change public.setting_changes;
  current_value jsonb;
  settled integer := 0;
begin
  for change in
    select * from public.setting_changes as c
    where c.status = 'approved' and c.effective_from <= now()
    order by c.effective_from, c.approved_at, c.id
    for update
  loop
    current_value := private.setting_change_current(change.setting_key, change.new_value);
    if change.direction = 'tightening' and private.setting_change_direction(
      change.setting_key, current_value, change.new_value
    ) = 'loosening' then
      update public.setting_changes as c
      set status = 'superseded', applied_at = now(), replaced_value = current_value
      where c.id = change.id;
    else
      if change.setting_key = 'platform_fee' then
        insert into private.fee_schedule (currency, rate_bps, fixed_minor)
        values (
          change.new_value ->> 'currency', (change.new_value ->> 'rate_bps')::int,
          (change.new_value ->> 'fixed_minor')::bigint
        )
        on conflict (currency) do update
          set rate_bps = excluded.rate_bps, fixed_minor = excluded.fixed_minor,
          updated_at = now();
      else
        update private.settings as s
        set value = change.new_value, updated_at = now()
        where s.key = change.setting_key;
      end if;
      update public.setting_changes as c
      set status = 'applied', applied_at = now(), replaced_value = current_value
      where c.id = change.id;
    end if;
    settled := settled + 1;
  end loop;
  return settled;
end
$$;

/**
 * AFTER INSERT OR UPDATE trigger on setting_changes: a change approved (at its proposal, or
 * by the second admin) whose effective_from has come is applied at once, with any other
 * change that is due. Security definer: private.apply_due_setting_changes is its owner's.
 */
create or replace function private.apply_approved_setting_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.apply_due_setting_changes();
  return null;
end
$$;

create trigger apply_approved_setting_change
after insert or update of status on public.setting_changes
for each row
when (new.status = 'approved' and new.effective_from <= now())
execute function private.apply_approved_setting_change();

/**
 * Schedule private.apply_due_setting_changes() every minute where pg_cron is installed (in
 * the database where it runs its jobs); elsewhere changes apply when approved, or when the
 * function is called. Returns what it did.
 */
create or replace function private.schedule_setting_changes() returns text
language plpgsql
set search_path = ''
as $$
begin
  return private.schedule_job(
    'payguard-setting-changes', '* * * * *', 'select private.apply_due_setting_changes()',
    'setting changes apply when approved, or by select private.apply_due_setting_changes()'
  );
end
$$;

select private.schedule_setting_changes();

-- Section: the RPCs
--
-- For admins at aal2, with a recent step-up (the trigger on the table refuses otherwise):
-- each answers the change as it now is.

/**
 * An admin proposes setting `setting_key` to `new_value` from `effective_from` (now when
 * null), saying why (PostgREST: /rpc/propose_setting_change). A tightening change is
 * approved at once, and applied at once when it is due; any other waits for a second admin.
 */
create or replace function public.propose_setting_change(
  setting_key text,
  new_value jsonb,
  reason text,
  effective_from timestamptz default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  change_id uuid;
  answer jsonb;
begin
  insert into public.setting_changes (setting_key, new_value, effective_from, reason)
  values (
    propose_setting_change.setting_key, propose_setting_change.new_value,
    coalesce(propose_setting_change.effective_from, now()), propose_setting_change.reason
  )
  returning id into change_id;
  select to_jsonb(c.*) into answer from public.setting_changes as c where c.id = change_id;
  return answer;
end
$$;

grant execute on function propose_setting_change(text, jsonb, text, timestamptz) to admin;

/**
 * A second admin approves a proposed setting change, saying why (PostgREST:
 * /rpc/approve_setting_change): it applies at once when it is due, else at effective_from.
 */
create or replace function public.approve_setting_change(change_id uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  update public.setting_changes as c
  set status = 'approved', approval_reason = approve_setting_change.reason
  where c.id = change_id;
  if not found then
    raise exception 'no setting change %', change_id using errcode = 'PT404';
  end if;
  select to_jsonb(c.*) into answer from public.setting_changes as c where c.id = change_id;
  return answer;
end
$$;

grant execute on function approve_setting_change(uuid, text) to admin;

/**
 * Another admin rejects a setting change that is not applied, or its proposer withdraws it
 * (the answer's status says which), saying why (PostgREST: /rpc/reject_setting_change).
 */
create or replace function public.reject_setting_change(change_id uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  update public.setting_changes as c
  set status = 'rejected', cancel_reason = reject_setting_change.reason
  where c.id = change_id;
  if not found then
    raise exception 'no setting change %', change_id using errcode = 'PT404';
  end if;
  select to_jsonb(c.*) into answer from public.setting_changes as c where c.id = change_id;
  return answer;
end
$$;

grant execute on function reject_setting_change(uuid, text) to admin;
