-- Limits and alerts
--
-- What people must hear of, and what a user may do how often: security alerts for staff
-- (amount thresholds, velocity limits, a new payment method followed by a large payment,
-- activity after hours), notifications for the parties to every payment event (the source
-- document's user stories 2, 3 and 5), rate limits per operation (the endpoint matrix's
-- levels), amount limits per operation and per day, and the wallets users may read.
--
-- Alerts and notifications are written by triggers, as the owner; no client writes either.
-- The limits apply to users' requests only (the role `authenticated`), in BEFORE triggers,
-- which run before row-level security's WITH CHECK. So the amount limits count only a row
-- of the caller's own and leave any other to the policy: their refusal tells a stranger
-- nothing (see escrow_and_milestone_payments.sql).
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/notifications.toml, policies/security_alerts.toml,
-- tests/sql/limits_and_alerts/

set local check_function_bodies = off;

/** The setting `key` (per currency, with a default) for `for_currency`. */
create or replace function private.currency_setting(key text, for_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      (private.setting(key) ->> upper(for_currency))::bigint,
      (private.setting(key) ->> 'default')::bigint
    )
  );
end
$$;

-- Section: security alerts

create type public.security_alert_kind as enum (
  'amount_threshold', 'velocity_limit', 'new_method_large_payment', 'after_hours',
  -- The oldest unsealed audit row is older than the threshold (audit_chain.sql).
  'audit_seal_backlog',
  -- A payout method was added, changed or verified: its cool-down starts (payment_methods.sql).
  'payout_method_changed'
);

create table public.security_alerts (
  id uuid primary key default gen_random_uuid(),
  kind public.security_alert_kind not null,
  -- The user it concerns; null for the shared counter of requests whose token names no user.
  user_id uuid references public.users (id),
  -- What was done, e.g. milestone_payments.release.
  operation text not null,
  details jsonb not null default '{}' check (jsonb_typeof(details) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.security_alerts is
'Signals of possible fraud for admins and auditors (source document: real-time alerting).';

create index security_alerts_user_id_idx on public.security_alerts (user_id);

create index security_alerts_created_at_idx on public.security_alerts (created_at desc);

create trigger keep_row_timestamps
before insert or update on public.security_alerts
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.security_alerts
for each row
execute function private.refuse_card_data(
  'id', 'kind', 'user_id', 'created_at', 'updated_at'
);

insert into private.settings (key, value, description)
values
(
  'alert_amount_threshold_minor',
  '{"default": 1000000, "USD": 1000000, "EUR": 1000000, "GBP": 800000, "JPY": 1500000}',
  'Per currency, the amount at or above which a payment or withdrawal raises a security alert.'
),
(
  'new_method_window_seconds', '86400',
  'A large payment this soon after its payer added a payment method raises an alert.'
),
(
  'business_hours', '{"time_zone": "America/New_York", "from": 7, "to": 21}',
  'Payment activity outside these local hours raises an after-hours alert.'
);

/** Write a security alert. */
create or replace function private.raise_security_alert(
  alert_kind public.security_alert_kind, subject uuid, alert_operation text, alert_details jsonb
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.security_alerts (kind, user_id, operation, details)
  values (alert_kind, subject, alert_operation, alert_details);
end
$$;

/** Alerts for a payment event of `amount` by `actor`: a large amount, after hours. */
create or replace function private.check_payment_activity(
  actor uuid, activity text, amount bigint, activity_currency char(3)
) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  hours jsonb := private.setting('business_hours');
  local_hour int := extract(
    hour from now() at time zone (hours ->> 'time_zone')
  )::int;
begin
  if amount >= private.currency_setting('alert_amount_threshold_minor', activity_currency) then
    perform private.raise_security_alert(
      'amount_threshold', actor, activity,
      jsonb_build_object('amount_minor', amount, 'currency', activity_currency)
    );
  end if;
  if local_hour < (hours ->> 'from')::int or local_hour >= (hours ->> 'to')::int then
    perform private.raise_security_alert(
      'after_hours', actor, activity,
      jsonb_build_object('local_hour', local_hour, 'time_zone', hours ->> 'time_zone')
    );
  end if;
end
$$;

-- Section: notifications

create table public.notifications (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id) on delete cascade,
  -- What happened, e.g. milestone_payment.released, withdrawal.requested.
  event text not null check (event ~ '^[a-z_.]+$'),
  title text not null check (char_length(title) between 1 and 200),
  milestone_payment_id uuid references public.milestone_payments (id),
  withdrawal_id uuid references public.withdrawals (id),
  amount_minor bigint check (amount_minor > 0),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
  -- Set by its user, who may update this column only.
  read_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

comment on table public.notifications is
'A payment event a party must hear of. Users read their own and mark them read.';

create index notifications_user_id_idx on public.notifications (user_id, created_at desc);

create index notifications_milestone_payment_id_idx on public.notifications (milestone_payment_id);

create index notifications_withdrawal_id_idx on public.notifications (withdrawal_id);

create trigger keep_row_timestamps
before insert or update on public.notifications
for each row execute function private.keep_row_timestamps();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.notifications
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'milestone_payment_id', 'withdrawal_id', 'read_at', 'created_at', 'updated_at'
);

/** Tell `recipient` of a payment event. */
create or replace function private.notify(
  recipient uuid,
  notification_event text,
  notification_title text,
  payment uuid default null,
  withdrawal uuid default null,
  amount bigint default null,
  notification_currency char(3) default null
) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.notifications (
    user_id, event, title, milestone_payment_id, withdrawal_id, amount_minor, currency
  )
  values (
    recipient, notification_event, notification_title, payment, withdrawal, amount,
    notification_currency
  );
end
$$;

/**
 * AFTER INSERT OR UPDATE trigger on milestone_payments: notify both parties of each event,
 * and raise the alerts it calls for.
 */
create or replace function private.milestone_payment_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  event text;
begin
  if tg_op = 'INSERT' then
    perform private.notify(
      new.payer_id, 'milestone_payment.initiated', 'You started a milestone payment',
      new.id, null, new.amount_minor, new.currency
    );
    perform private.notify(
      new.payee_id, 'milestone_payment.pending', 'A milestone payment to you is pending',
      new.id, null, new.amount_minor, new.currency
    );
    perform private.check_payment_activity(
      new.payer_id, 'milestone_payments.insert', new.amount_minor, new.currency
    );
    if new.amount_minor >= private.mfa_threshold(new.currency) and exists (
      select from public.payment_methods as m
      where m.user_id = new.payer_id
        and m.created_at > now() - make_interval(
          secs => (private.setting('new_method_window_seconds') #>> '{}')::bigint
        )
    ) then
      perform private.raise_security_alert(
        'new_method_large_payment', new.payer_id, 'milestone_payments.insert',
        jsonb_build_object('amount_minor', new.amount_minor, 'currency', new.currency)
      );
    end if;
    return null;
  end if;
  if new.status = old.status then
    return null;
  end if;
  event := 'milestone_payment.' || new.status::text;
  perform private.notify(
    new.payer_id, event, 'Your milestone payment is ' || new.status::text,
    new.id, null, new.amount_minor, new.currency
  );
  perform private.notify(
    new.payee_id, event, 'A milestone payment to you is ' || new.status::text,
    new.id, null, new.amount_minor, new.currency
  );
  if new.status = 'released' then
    perform private.check_payment_activity(
      new.payer_id, 'milestone_payments.release', new.amount_minor, new.currency
    );
  end if;
  return null;
end
$$;

create trigger milestone_payment_events
after insert or update of status on public.milestone_payments
for each row execute function private.milestone_payment_events();

/**
 * AFTER UPDATE trigger on project_milestones: the review of a milestone. A submission is told
 * to the owner (milestone.submitted), a rejection to the contractor with its reason
 * (milestone.rejected; the whole reason stays on the milestone). Each names the milestone's
 * live payment, if it has one.
 */
create or replace function private.milestone_review_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  project public.projects;
  payment uuid;
begin
  if new.status is not distinct from old.status or not (
    new.status = 'completed' or (old.status = 'completed' and new.status = 'in_progress')
  ) then
    return null;
  end if;
  select * into project from public.projects as p where p.id = new.project_id;
  select mp.id into payment from public.milestone_payments as mp
  where mp.milestone_id = new.id and mp.status not in ('canceled', 'refunded');
  if new.status = 'completed' then
    perform private.notify(
      project.owner_id, 'milestone.submitted',
      left('Milestone "' || new.title || '" was submitted for your review', 199) || '.',
      payment, null, new.amount_minor, new.currency
    );
  else
    perform private.notify(
      project.contractor_id, 'milestone.rejected',
      left('Milestone "' || new.title || '" was sent back: ' || new.rejection_reason, 199)
      || '.',
      payment, null, new.amount_minor, new.currency
    );
  end if;
  return null;
end
$$;

create trigger milestone_review_events
after update of status on public.project_milestones
for each row execute function private.milestone_review_events();

/** AFTER INSERT OR UPDATE trigger on withdrawals: notify the owner; alert on large ones. */
create or replace function private.withdrawal_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.notify(
      new.user_id, 'withdrawal.requested', 'You requested a withdrawal',
      null, new.id, new.amount_minor, new.currency
    );
    perform private.check_payment_activity(
      new.user_id, 'withdrawals.insert', new.amount_minor, new.currency
    );
  elsif new.status <> old.status then
    perform private.notify(
      new.user_id, 'withdrawal.' || new.status::text,
      'Your withdrawal is ' || new.status::text, null, new.id, new.amount_minor, new.currency
    );
  end if;
  return null;
end
$$;

create trigger withdrawal_events
after insert or update of status on public.withdrawals
for each row execute function private.withdrawal_events();

/**
 * AFTER INSERT OR DELETE trigger on payment_methods: the owner hears of each change, unless
 * the method goes with its owner (a user being deleted: their profile is gone already).
 */
create or replace function private.payment_method_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.notify(new.user_id, 'payment_method.added', 'A payment method was added');
  elsif exists (select from public.users as u where u.id = old.user_id) then
    perform private.notify(old.user_id, 'payment_method.removed', 'A payment method was removed');
  end if;
  return null;
end
$$;

create trigger payment_method_events
after insert or delete on public.payment_methods
for each row execute function private.payment_method_events();

-- Section: rate limits

insert into private.settings (key, value, description)
values (
  'velocity_limits',
  (
    '{"low": {"calls": 60, "seconds": 60}, "medium": {"calls": 20, "seconds": 60},'
    || ' "high": {"calls": 5, "seconds": 60}}'
  )::jsonb,
  'The endpoint matrix''s rate-limit levels, as calls per window, per user and operation.'
);

-- The endpoint matrix's rate limiting, per operation.
create table private.rate_limit_rules (
  -- The table and what is done to it (milestone_payments.release), or an RPC's operation.
  operation text not null,
  -- A level of the velocity_limits setting.
  rate_level text not null,
  rpc text,
  constraint rate_limit_rules_pkey primary key (operation),
  constraint rate_limit_rules_rate_level_check check (rate_level in ('low', 'medium', 'high')),
  constraint rate_limit_rules_rpc_key unique (rpc)
);

comment on column private.rate_limit_rules.rpc is
'The public RPC that performs the operation: its refused calls count against this limit.';

insert into private.rate_limit_rules (operation, rate_level, rpc)
values
('payment_methods.insert', 'medium', null),
('payment_methods.delete', 'medium', null),
('payment_transactions.insert', 'high', null),
('escrow_accounts.insert', 'high', null),
('milestone_payments.insert', 'medium', 'create_milestone_payment'),
('milestone_payments.release', 'high', 'release_milestone_payment'),
('milestone_payments.cancel', 'medium', 'cancel_milestone_payment'),
('disputes.insert', 'medium', 'open_dispute'),
('project_milestones.submit', 'medium', 'submit_milestone'),
('project_milestones.reject', 'medium', 'reject_milestone'),
-- The payee's release after a lapsed review: its accepted calls count as releases
-- (milestone_payments.release), its refused calls here.
('milestone_payments.release_lapsed', 'high', 'release_lapsed_milestone_payment'),
('withdrawals.insert', 'high', 'request_withdrawal');

-- One counter per user, operation and fixed window; the requests whose token names no user
-- share one counter (user_id null: the key treats nulls as equal).
create table private.rate_limit_counters (
  user_id uuid,
  operation text not null,
  window_start timestamptz not null,
  call_count integer not null,
  refusal_alert_id uuid,
  constraint rate_limit_counters_user_id_fkey foreign key (user_id)
  references public.users (id) on delete cascade,
  constraint rate_limit_counters_operation_fkey foreign key (operation)
  references private.rate_limit_rules (operation),
  constraint rate_limit_counters_user_id_operation_window_start_key
  unique nulls not distinct (user_id, operation, window_start)
);

comment on column private.rate_limit_counters.refusal_alert_id is
'The security alert that counts the refused calls over the limit in this window.';

create index rate_limit_counters_operation_idx on private.rate_limit_counters (operation);

/**
 * The velocity limit of `requested_operation` for the requesting user's call: counted in its
 * fixed window, refused (PT429) past the limit, with a security alert when the limit is
 * reached. A user's request whose token names no user is counted in the shared counter of
 * such requests (private.counted_caller).
 */
create or replace function private.enforce_rate_limit(requested_operation text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid;
  limits jsonb;
  window_seconds int;
  counted int;
begin
  -- Only users' requests: the role PostgREST switched to (this function runs as its owner).
  if current_setting('role', true) is distinct from 'authenticated' then
    return;
  end if;
  select private.setting('velocity_limits') -> r.rate_level into limits
  from private.rate_limit_rules as r where r.operation = requested_operation;
  if limits is null then
    return;
  end if;
  requester := private.counted_caller();
  window_seconds := (limits ->> 'seconds')::int;
  insert into private.rate_limit_counters as c (user_id, operation, window_start, call_count)
  values (
    requester, requested_operation,
    to_timestamp(floor(extract(epoch from now()) / window_seconds) * window_seconds), 1
  )
  on conflict (user_id, operation, window_start) do update set call_count = c.call_count + 1
  returning c.call_count into counted;
  if counted > (limits ->> 'calls')::int then
    raise exception 'too many % calls: at most % per % seconds',
    requested_operation, limits ->> 'calls', window_seconds
    using errcode = 'PT429', hint = 'wait for the window to pass, then retry';
  end if;
  if counted = (limits ->> 'calls')::int then
    perform private.raise_security_alert(
      'velocity_limit', requester, requested_operation,
      jsonb_build_object('calls', counted, 'window_seconds', window_seconds)
    );
  end if;
end
$$;

/** The message of a call refused over a velocity limit, as private.enforce_rate_limit says it. */
create or replace function private.rate_limit_message(
  limited_operation text, max_calls integer, window_seconds integer
) returns text
language sql
immutable
set search_path = ''
as $$
  select format(
    'too many %s calls: at most %s per %s seconds', limited_operation, max_calls, window_seconds
  )
$$;

/** BEFORE trigger: the velocity limit of the operation the statement performs. */
create or replace function private.limit_rate() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'milestone_payments' and tg_op = 'UPDATE' then
    if new.status = 'released' and old.status is distinct from 'released' then
      perform private.enforce_rate_limit('milestone_payments.release');
    elsif new.status = 'canceled' and old.status is distinct from 'canceled' then
      perform private.enforce_rate_limit('milestone_payments.cancel');
    end if;
  elsif tg_table_name = 'project_milestones' and tg_op = 'UPDATE' then
    if new.status = 'completed' and old.status is distinct from 'completed' then
      perform private.enforce_rate_limit('project_milestones.submit');
    elsif old.status = 'completed' and new.status = 'in_progress' then
      perform private.enforce_rate_limit('project_milestones.reject');
    end if;
  else
    perform private.enforce_rate_limit(tg_table_name || '.' || lower(tg_op));
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

create trigger limit_rate
before insert or delete on public.payment_methods
for each row execute function private.limit_rate();

create trigger limit_rate
before insert on public.payment_transactions
for each row execute function private.limit_rate();

create trigger limit_rate
before insert on public.escrow_accounts
for each row execute function private.limit_rate();

-- Releasing and canceling are limited as operations of their own.
create trigger limit_rate
before insert or update of status on public.milestone_payments
for each row execute function private.limit_rate();

-- Submitting and rejecting a milestone are limited as operations of their own.
create trigger limit_rate
before update of status on public.project_milestones
for each row execute function private.limit_rate();

create trigger limit_rate
before insert on public.disputes
for each row execute function private.limit_rate();

create trigger limit_rate
before insert on public.withdrawals
for each row execute function private.limit_rate();

-- Section: amount limits

insert into private.settings (key, value, description)
values (
  'amount_limits',
  '{
    "milestone_payments.insert": {"per_operation": 5000000, "per_day": 20000000},
    "payment_transactions.insert": {"per_operation": 1000000, "per_day": 5000000},
    "withdrawals.insert": {"per_operation": 2500000, "per_day": 5000000}
  }',
  'Per operation, the largest amount one request may move and the most one user may move '
  || 'in a UTC day, in minor units of any currency.'
);

-- What each user moved per operation, currency and UTC day.
create table private.daily_amounts (
  user_id uuid not null references public.users (id) on delete cascade,
  operation text not null,
  currency char(3) not null,
  utc_day date not null,
  total_minor bigint not null check (total_minor >= 0),
  primary key (user_id, operation, currency, utc_day)
);

/**
 * Refuse (PT422) an amount over the operation's limit, or one that would take the user's
 * total for the day over its daily limit; otherwise count it. Only users' requests.
 */
create or replace function private.enforce_amount_limit(
  requested_operation text, amount bigint, amount_currency char(3)
) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
  limits jsonb := private.setting('amount_limits') -> requested_operation;
  moved_today bigint;
begin
  -- No amount: a row that the policies or constraints refuse next, saying nothing more here.
  if requester is null or limits is null or amount is null
    or current_setting('role', true) is distinct from 'authenticated' then
    return;
  end if;
  if amount > (limits ->> 'per_operation')::bigint then
    raise exception '% of % % is over the limit of % per operation',
    requested_operation, amount, amount_currency, limits ->> 'per_operation'
    using errcode = 'PT422';
  end if;
  insert into private.daily_amounts as d (user_id, operation, currency, utc_day, total_minor)
  values (requester, requested_operation, amount_currency, (now() at time zone 'UTC')::date, amount)
  on conflict (user_id, operation, currency, utc_day)
  do update set total_minor = d.total_minor + excluded.total_minor
  returning d.total_minor into moved_today;
  if moved_today > (limits ->> 'per_day')::bigint then
    raise exception '% of % % would take today''s total to %, over the daily limit of %',
    requested_operation, amount, amount_currency, moved_today, limits ->> 'per_day'
    using errcode = 'PT422';
  end if;
end
$$;

/**
 * BEFORE INSERT trigger: the amount limits of the operation, for a row of the requesting
 * user's own only. A user's row that names what is not theirs (another's milestone, payout
 * method or payment method) is not counted nor refused here: the insert policies refuse
 * it next, as they refuse an id that does not exist.
 */
create or replace function private.limit_amount() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  owned boolean := true;
begin
  if current_setting('role', true) = 'authenticated' then
    if tg_table_name = 'milestone_payments' then
      owned := new.payer_id is not distinct from (select auth.uid())
        and private.owns_milestone(new.milestone_id);
    elsif tg_table_name = 'withdrawals' then
      owned := new.user_id is not distinct from (select auth.uid())
        and private.owns_payout_method(new.payout_method_id);
    elsif tg_table_name = 'payment_transactions' then
      owned := new.user_id is not distinct from (select auth.uid())
        and (new.payment_method_id is null or private.owns_payment_method(new.payment_method_id));
    end if;
  end if;
  if owned then
    perform private.enforce_amount_limit(
      tg_table_name || '.insert', new.amount_minor, new.currency
    );
  end if;
  return new;
end
$$;

-- After derive_milestone_payment (alphabetical order), so the amount is the milestone's.
create trigger limit_amount
before insert on public.milestone_payments
for each row execute function private.limit_amount();

create trigger limit_amount
before insert on public.payment_transactions
for each row execute function private.limit_amount();

create trigger limit_amount
before insert on public.withdrawals
for each row execute function private.limit_amount();

-- Section: wallets

/**
 * The requesting user's wallets: posted balance, what is reserved by pending withdrawals,
 * and what they may withdraw now. Nobody else's.
 */
create or replace function private.requester_wallets() returns table (
  currency char(3), posted_minor bigint, reserved_minor bigint, withdrawable_minor bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select
    b.currency,
    b.credits_posted - b.debits_posted,
    b.debits_pending,
    private.withdrawable(b.user_id, b.currency)
  from private.ledger_limited_balances as b
  where b.kind = 'user_wallet' and b.user_id = (select auth.uid())
  order by b.currency
$$;

grant execute on function private.requester_wallets() to authenticated;

/** The caller's wallet balances, from the ledger (PostgREST: /rpc/my_wallet_balances). */
create or replace function public.my_wallet_balances() returns table (
  currency char(3), posted_minor bigint, reserved_minor bigint, withdrawable_minor bigint
)
language sql
stable
set search_path = ''
as $$
  select * from private.requester_wallets()
$$;

grant execute on function my_wallet_balances() to authenticated;
