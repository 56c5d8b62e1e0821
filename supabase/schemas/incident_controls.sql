-- Incident controls
--
-- The levers the incident plan pulls, each an admin's act at aal2, with a written reason,
-- recorded in a table of its own (so in the audit trail) and never deleted:
-- - a user's money movement suspended (payment_suspensions): they fund, create or release no
--   payment and request no withdrawal, and nothing is paid out to them, until an admin
--   lifts it;
-- - payouts or funding frozen platform-wide (platform_freezes): no payout is started, or no
--   funding attempt begins, until an admin lifts it (security-sensitive: a recent step-up);
-- - a notice to the users an incident touched (incident_notices): every payer and payee of
--   the milestone payments a query over payments chooses gets a notification.
-- Money the processor already moved is always recorded: a freeze or a suspension stops what
-- would start a movement, never the record of one that happened.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/payment_suspensions.toml, policies/platform_freezes.toml,
-- policies/incident_notices.toml, tests/sql/incident_controls/

set local check_function_bodies = off;

-- Section: suspensions and freezes

create table public.payment_suspensions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id),
  reason text not null check (private.is_written(reason, 2000)),
  -- The admin who suspended, and who lifted: the database's to record (keep_lever_record).
  suspended_by uuid not null references public.users (id),
  lifted_at timestamptz,
  lifted_by uuid references public.users (id),
  lift_reason text check (lift_reason is null or private.is_written(lift_reason, 2000)),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint payment_suspensions_lifted_check check (
    (lifted_at is null) = (lifted_by is null) and (lifted_at is null) = (lift_reason is null)
  )
);

comment on table public.payment_suspensions is
'A user''s money movement suspended by an admin, with a reason, until an admin lifts it.';

create index payment_suspensions_user_id_idx on public.payment_suspensions (user_id);

create index payment_suspensions_suspended_by_idx on public.payment_suspensions (suspended_by);

create index payment_suspensions_lifted_by_idx on public.payment_suspensions (lifted_by);

-- One suspension in force per user.
create unique index payment_suspensions_one_in_force_idx on public.payment_suspensions (user_id)
where lifted_at is null;

create table public.platform_freezes (
  id uuid primary key default gen_random_uuid(),
  -- payouts: no payout starts; funding: no funding attempt begins.
  scope text not null check (scope in ('payouts', 'funding')),
  reason text not null check (private.is_written(reason, 2000)),
  frozen_by uuid not null references public.users (id),
  lifted_at timestamptz,
  lifted_by uuid references public.users (id),
  lift_reason text check (lift_reason is null or private.is_written(lift_reason, 2000)),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint platform_freezes_lifted_check check (
    (lifted_at is null) = (lifted_by is null) and (lifted_at is null) = (lift_reason is null)
  )
);

comment on table public.platform_freezes is
'Payouts or funding frozen platform-wide by an admin, with a reason, until an admin lifts it.';

create index platform_freezes_frozen_by_idx on public.platform_freezes (frozen_by);

create index platform_freezes_lifted_by_idx on public.platform_freezes (lifted_by);

-- One freeze in force per scope.
create unique index platform_freezes_one_in_force_idx on public.platform_freezes (scope)
where lifted_at is null;

/**
 * BEFORE INSERT OR UPDATE trigger on payment_suspensions and platform_freezes, whose first
 * argument names the column of the admin who made it: the acting admin is recorded as its
 * maker on insert, and as its lifter when it is lifted; a record is lifted once, and nothing
 * else of it ever changes (PT409). No admin suspends their own payments or lifts their own
 * suspension (PT403). Security definer, to read the request's user (auth.uid()).
 */
create or replace function private.keep_lever_record() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  maker text := tg_argv[0];
  actor uuid := (select auth.uid());
begin
  if tg_table_name = 'payment_suspensions' and actor = (to_jsonb(new) ->> 'user_id')::uuid then
    raise exception 'no admin suspends their own payments, or lifts their own suspension'
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if tg_op = 'INSERT' then
    new := jsonb_populate_record(new, jsonb_build_object(maker, actor));
    new.lifted_at := null;
    new.lifted_by := null;
    new.lift_reason := null;
    return new;
  end if;
  if old.lifted_at is not null then
    raise exception '%.% % was lifted already: it never changes', tg_table_schema, tg_table_name,
    old.id
    using errcode = 'PT409';
  end if;
  if (to_jsonb(new) - 'lifted_at' - 'lifted_by' - 'lift_reason' - 'updated_at')
    is distinct from (to_jsonb(old) - 'lifted_at' - 'lifted_by' - 'lift_reason' - 'updated_at')
  then
    raise exception '%.% %: only its lifting is recorded after it is made', tg_table_schema,
    tg_table_name, old.id
    using errcode = 'PT409';
  end if;
  new.lifted_at := now();
  new.lifted_by := actor;
  return new;
end
$$;

create trigger keep_lever_record
before insert or update on public.payment_suspensions
for each row execute function private.keep_lever_record('suspended_by');

create trigger keep_lever_record
before insert or update on public.platform_freezes
for each row execute function private.keep_lever_record('frozen_by');

create trigger keep_row_timestamps
before insert or update on public.payment_suspensions
for each row execute function private.keep_row_timestamps();

create trigger keep_row_timestamps
before insert or update on public.platform_freezes
for each row execute function private.keep_row_timestamps();

create trigger staff_writes_need_mfa
before insert or update or delete on public.payment_suspensions
for each row execute function private.staff_writes_need_mfa();

-- A platform-wide freeze, or its lifting, is security-sensitive: a recent step-up too.
create trigger staff_writes_need_mfa
before insert or update or delete on public.platform_freezes
for each row execute function private.staff_writes_need_mfa('step_up');

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.payment_suspensions
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'suspended_by', 'lifted_at', 'lifted_by', 'created_at', 'updated_at'
);

create trigger refuse_card_data
before insert or update
on public.platform_freezes
for each row
execute function private.refuse_card_data(
  'id', 'frozen_by', 'lifted_at', 'lifted_by', 'created_at', 'updated_at'
);

/** The reason `subject`'s money movement is suspended, or null when it is not. */
create or replace function private.payment_suspension(subject uuid) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select s.reason from public.payment_suspensions as s
    where s.user_id = subject and s.lifted_at is null
  );
end
$$;

grant execute on function private.payment_suspension(uuid) to payment_service;

/** The reason `freeze_scope` (payouts, funding) is frozen platform-wide, or null. */
create or replace function private.platform_freeze(freeze_scope text) returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select f.reason from public.platform_freezes as f
    where f.scope = freeze_scope and f.lifted_at is null
  );
end
$$;

grant execute on function private.platform_freeze(text) to payment_service;

-- Section: what they stop
--
-- Each check raises before anything is written: a suspended user is refused with PT403, a
-- freeze with PT503 (the service is unavailable for now). Payouts are stopped where they
-- start: withdrawals_to_pay_out() lists none while payouts are frozen, nor any of a
-- suspended user's (stripe_border.sql).

/**
 * Refuse (PT403) what would move money of `subject` while their payments are suspended, with
 * `refusal_hint`; do nothing otherwise (a null subject included).
 */
create or replace function private.refuse_if_suspended(
  subject uuid, refusal_hint text default 'contact support'
) returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if private.payment_suspension(subject) is not null then
    raise exception 'the payments of user % are suspended', subject
    using errcode = 'PT403', hint = refusal_hint;
  end if;
end
$$;

/**
 * Refuse (PT503) what would start a movement of `freeze_scope` (payouts, funding) while it is
 * frozen platform-wide, with `refusal_hint`; do nothing otherwise.
 */
create or replace function private.refuse_if_frozen(freeze_scope text, refusal_hint text)
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if private.platform_freeze(freeze_scope) is not null then
    raise exception '% frozen platform-wide for now',
    case when freeze_scope = 'funding' then 'funding is' else freeze_scope || ' are' end
    using errcode = 'PT503', hint = refusal_hint;
  end if;
end
$$;

/**
 * BEFORE INSERT trigger on funding_attempts: no funding attempt begins while funding is frozen
 * (PT503), nor for a payer whose money movement is suspended (PT403).
 */
create or replace function private.refuse_frozen_funding() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  payer uuid := (
    select mp.payer_id from public.milestone_payments as mp where mp.id = new.milestone_payment_id
  );
begin
  perform private.refuse_if_frozen('funding', 'try again once operations lift the freeze');
  perform private.refuse_if_suspended(payer);
  return new;
end
$$;

create trigger refuse_frozen_funding
before insert on public.funding_attempts
for each row execute function private.refuse_frozen_funding();

/**
 * BEFORE INSERT OR UPDATE trigger on milestone_payments: a user whose money movement is
 * suspended creates no milestone payment (PT403), nor does anyone create one that names an
 * erased payer or payee (PT409); and a payment whose payer is suspended, or
 * whose releaser is, is not released (PT403), whoever releases it: the payer, the payee after
 * a lapsed review, or private.release_lapsed_reviews. Anything else (a cancel, the
 * processor's record of a funding, staff settling a dispute) goes on.
 */
create or replace function private.refuse_suspended_payer() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if tg_op = 'INSERT' then
    perform private.refuse_if_suspended(actor);
    -- No new money for an erased user (users_and_projects.sql, the erasure).
    if exists (
      select from public.users as u
      where u.id in (new.payer_id, new.payee_id) and u.erased_at is not null
    ) then
      raise exception 'milestone payment % names an erased user', new.id
      using errcode = 'PT409', hint = 'an erased user is paid and pays nothing new';
    end if;
  elsif old.status = 'funded' and new.status = 'released' then
    perform private.refuse_if_suspended(
      old.payer_id, 'the payment waits until the suspension is lifted'
    );
    perform private.refuse_if_suspended(actor);
  end if;
  return new;
end
$$;

create trigger refuse_suspended_payer
before insert or update on public.milestone_payments
for each row execute function private.refuse_suspended_payer();

/**
 * BEFORE INSERT trigger on withdrawals: a user whose money movement is suspended requests no
 * withdrawal (PT403).
 */
create or replace function private.refuse_suspended_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.refuse_if_suspended(new.user_id);
  return new;
end
$$;

create trigger refuse_suspended_withdrawal
before insert on public.withdrawals
for each row execute function private.refuse_suspended_withdrawal();

/**
 * BEFORE INSERT trigger on payment_transactions: a charge a user starts (the request's role is
 * authenticated) begins neither while funding is frozen (PT503) nor while their payments are
 * suspended (PT403). What the processor reports (payment_service) is recorded whatever holds.
 */
create or replace function private.refuse_frozen_charge() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if current_setting('role', true) is distinct from 'authenticated' then
    return new;
  end if;
  perform private.refuse_if_frozen('funding', 'try again once operations lift the freeze');
  perform private.refuse_if_suspended(actor);
  return new;
end
$$;

create trigger refuse_frozen_charge
before insert on public.payment_transactions
for each row execute function private.refuse_frozen_charge();

/**
 * Refuse to start a request of a payout step (begin_withdrawal_step, stripe_border.sql) for
 * `withdrawal`: not while payouts are frozen (PT503), not for an owner whose payments are
 * suspended (PT403), not while its payout method is in its cool-down unless two admins
 * approved it (PT409). A request made already is resumed under its key whatever holds: the
 * processor may have carried it out.
 */
create or replace function private.refuse_payout_start(withdrawal uuid) returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  owner_id uuid := (select w.user_id from public.withdrawals as w where w.id = withdrawal);
begin
  perform private.refuse_if_frozen(
    'payouts', 'the withdrawal is paid out once operations lift the freeze'
  );
  perform private.refuse_if_suspended(
    owner_id, 'the withdrawal waits until the suspension is lifted'
  );
  if not private.withdrawal_clear_of_cool_down(withdrawal) then
    raise exception 'withdrawal %: its payout method is in its cool-down', withdrawal
    using errcode = 'PT409',
    hint = 'it is paid out when the cool-down ends, or once two admins approve it';
  end if;
end
$$;

-- Section: the admins' calls

/** Refuse (PT422) a reason that is not written: 10 to 2000 characters of words. */
create or replace function private.require_written_reason(reason text) returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if not private.is_written(reason, 2000) then
    raise exception 'an incident control needs a written reason of 10 to 2000 characters'
    using errcode = 'PT422',
    hint = 'say why in words: the reason is kept with the record and in the audit trail';
  end if;
end
$$;

grant execute on function private.require_written_reason(text) to admin;

/** An admin (aal2): suspend `subject`'s money movement, for `reason`. Returns the record. */
create or replace function public.suspend_user_payments(subject uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  perform private.require_written_reason(suspend_user_payments.reason);
  insert into public.payment_suspensions (user_id, reason)
  values (subject, suspend_user_payments.reason)
  returning to_jsonb(payment_suspensions.*) into answer;
  return answer;
exception when unique_violation then
  raise exception 'the payments of user % are suspended already', subject
  using errcode = 'PT409';
end
$$;

/** An admin (aal2): lift the suspension of `subject`'s money movement, for `reason`. */
create or replace function public.lift_payment_suspension(subject uuid, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  perform private.require_written_reason(lift_payment_suspension.reason);
  update public.payment_suspensions as s set lift_reason = lift_payment_suspension.reason
  where s.user_id = subject and s.lifted_at is null
  returning to_jsonb(s.*) into answer;
  if answer is null then
    raise exception 'the payments of user % are not suspended', subject using errcode = 'PT404';
  end if;
  return answer;
end
$$;

/** An admin (aal2, a recent step-up): freeze payouts or funding platform-wide. */
create or replace function public.freeze_platform(freeze_scope text, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  perform private.require_written_reason(freeze_platform.reason);
  if freeze_scope is null or freeze_scope not in ('payouts', 'funding') then
    raise exception 'a freeze stops payouts or funding, not %', coalesce(freeze_scope, 'null')
    using errcode = 'PT422';
  end if;
  insert into public.platform_freezes (scope, reason)
  values (freeze_scope, freeze_platform.reason)
  returning to_jsonb(platform_freezes.*) into answer;
  return answer;
exception when unique_violation then
  raise exception '% are frozen already', freeze_scope using errcode = 'PT409';
end
$$;

/** An admin (aal2, a recent step-up): lift the freeze of payouts or funding. */
create or replace function public.lift_platform_freeze(freeze_scope text, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  perform private.require_written_reason(lift_platform_freeze.reason);
  update public.platform_freezes as f set lift_reason = lift_platform_freeze.reason
  where f.scope = freeze_scope and f.lifted_at is null
  returning to_jsonb(f.*) into answer;
  if answer is null then
    raise exception '% are not frozen', coalesce(freeze_scope, 'null') using errcode = 'PT404';
  end if;
  return answer;
end
$$;

-- Section: notices to the users an incident touched

create table public.incident_notices (
  id uuid primary key default gen_random_uuid(),
  -- What the users are told (the notification's title).
  title text not null check (char_length(title) between 10 and 200),
  -- Why, for the record (not shown to users).
  reason text not null check (private.is_written(reason, 2000)),
  -- The query over milestone payments that chose the users: statuses, a creation window and
  -- an optional currency.
  payment_statuses public.milestone_payment_status[] not null
  check (cardinality(payment_statuses) > 0),
  created_from timestamptz not null,
  created_to timestamptz not null,
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  recipients integer not null default 0 check (recipients >= 0),
  sent_by uuid not null references public.users (id),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint incident_notices_window_check check (created_from < created_to)
);

comment on table public.incident_notices is
'A notice sent by an admin to every payer and payee of the milestone payments a query chose.';

create index incident_notices_sent_by_idx on public.incident_notices (sent_by);

create trigger keep_row_timestamps
before insert or update on public.incident_notices
for each row execute function private.keep_row_timestamps();

create trigger staff_writes_need_mfa
before insert or update or delete on public.incident_notices
for each row execute function private.staff_writes_need_mfa();

create trigger refuse_card_data
before insert or update
on public.incident_notices
for each row
execute function private.refuse_card_data(
  'id', 'created_from', 'created_to', 'sent_by', 'created_at', 'updated_at'
);

/**
 * BEFORE INSERT trigger on incident_notices: who sends it (the acting admin) and to whom:
 * every payer and payee of the milestone payments in the chosen statuses, created in the
 * window (and in the currency, when one is given), is told once; the count is recorded.
 */
create or replace function private.send_incident_notice() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  recipient uuid;
begin
  new.sent_by := (select auth.uid());
  new.recipients := 0;
  for recipient in
    select distinct party.user_id
    from public.milestone_payments as mp
    cross join lateral (values (mp.payer_id), (mp.payee_id)) as party (user_id)
    where mp.status = any(new.payment_statuses)
      and mp.created_at >= new.created_from and mp.created_at < new.created_to
      and (new.currency is null or mp.currency = new.currency)
      and party.user_id is not null
  loop
    perform private.notify(recipient, 'incident.notice', new.title);
    new.recipients := new.recipients + 1;
  end loop;
  return new;
end
$$;

create trigger send_incident_notice
before insert on public.incident_notices
for each row execute function private.send_incident_notice();

/**
 * A notice, once sent, never changes and is never deleted (PT409).
 */
create or replace function private.keep_incident_notice() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'incident notice % was sent: it never changes', old.id using errcode = 'PT409';
end
$$;

grant execute on function private.keep_incident_notice() to admin;

create trigger keep_incident_notice
before update or delete on public.incident_notices
for each row execute function private.keep_incident_notice();

/**
 * An admin (aal2): tell every payer and payee of the milestone payments in `statuses` created
 * in [created_from, created_to) (in `notice_currency`, when given) `title`, for `reason`.
 * Returns the notice, with the number of users told.
 */
create or replace function public.notify_incident(
  title text,
  reason text,
  statuses public.milestone_payment_status[],
  created_from timestamptz,
  created_to timestamptz,
  notice_currency text default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  answer jsonb;
begin
  perform private.require_written_reason(notify_incident.reason);
  insert into public.incident_notices (
    title, reason, payment_statuses, created_from, created_to, currency
  )
  values (
    notify_incident.title, notify_incident.reason, statuses, notify_incident.created_from,
    notify_incident.created_to, upper(notice_currency)
  )
  returning to_jsonb(incident_notices.*) into answer;
  return answer;
end
$$;

-- Section: privileges

revoke execute on function suspend_user_payments(uuid, text) from public, anon, authenticated;

revoke execute on function lift_payment_suspension(uuid, text) from public, anon, authenticated;

revoke execute on function freeze_platform(text, text) from public, anon, authenticated;

revoke execute on function lift_platform_freeze(text, text) from public, anon, authenticated;

revoke execute on function notify_incident(
  text, text, milestone_payment_status[], timestamptz, timestamptz, text
) from public, anon, authenticated;

grant execute on function suspend_user_payments(uuid, text) to admin;

grant execute on function lift_payment_suspension(uuid, text) to admin;

grant execute on function freeze_platform(text, text) to admin;

grant execute on function lift_platform_freeze(text, text) to admin;

grant execute on function notify_incident(
  text, text, milestone_payment_status[], timestamptz, timestamptz, text
) to admin;
