-- What people must hear of: notifications for the parties to every payment event (the
-- source document's user stories 2, 3 and 5), and security alerts for staff (amount
-- thresholds, velocity limits, a new payment method followed by a large payment, activity
-- after hours). Both are written by triggers, as the owner; no client writes either.

create table public.notifications (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id) on delete cascade,
  event text not null check (event ~ '^[a-z_.]+$'),
  title text not null check (char_length(title) between 1 and 200),
  milestone_payment_id uuid references public.milestone_payments (id),
  withdrawal_id uuid references public.withdrawals (id),
  amount_minor bigint check (amount_minor > 0),
  currency char(3) check (currency ~ '^[A-Z]{3}$'),
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

create trigger refuse_card_data
before insert or update on public.notifications
for each row execute function private.refuse_card_data();

create type public.security_alert_kind as enum (
  'amount_threshold', 'velocity_limit', 'new_method_large_payment', 'after_hours'
);

create table public.security_alerts (
  id uuid primary key default gen_random_uuid(),
  kind public.security_alert_kind not null,
  user_id uuid references public.users (id),
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

create trigger refuse_card_data
before insert or update on public.security_alerts
for each row execute function private.refuse_card_data();

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
),
(
  'velocity_limits',
  (
    '{"low": {"calls": 60, "seconds": 60}, "medium": {"calls": 20, "seconds": 60},'
    || ' "high": {"calls": 5, "seconds": 60}}'
  )::jsonb,
  'The endpoint matrix''s rate-limit levels, as calls per window, per user and operation.'
);

-- The endpoint matrix's rate limiting, per operation.
create table private.rate_limit_rules (
  operation text primary key,
  rate_level text not null check (rate_level in ('low', 'medium', 'high'))
);

insert into private.rate_limit_rules (operation, rate_level)
values
('payment_methods.insert', 'medium'),
('payment_methods.delete', 'medium'),
('payment_transactions.insert', 'high'),
('escrow_accounts.insert', 'high'),
('milestone_payments.insert', 'medium'),
('milestone_payments.release', 'high'),
('disputes.insert', 'medium'),
('withdrawals.insert', 'high');

-- One counter per user, operation and fixed window.
create table private.rate_limit_counters (
  user_id uuid not null references public.users (id) on delete cascade,
  operation text not null references private.rate_limit_rules (operation),
  window_start timestamptz not null,
  call_count int not null,
  primary key (user_id, operation, window_start)
);

create index rate_limit_counters_operation_idx on private.rate_limit_counters (operation);

/** The setting `key` (per currency, with a default) for `for_currency`. */
create function private.currency_setting(key text, for_currency char(3)) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (private.setting(key) ->> upper(for_currency))::bigint,
    (private.setting(key) ->> 'default')::bigint
  )
$$;

/** Write a security alert. */
create function private.raise_security_alert(
  alert_kind public.security_alert_kind, subject uuid, alert_operation text, alert_details jsonb
) returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.security_alerts (kind, user_id, operation, details)
  values (alert_kind, subject, alert_operation, alert_details)
$$;

/**
 * Count a call of `operation` by the requesting user; refuse it with PT429 once the user
 * is over the operation's limit. The call that reaches the limit succeeds and writes the
 * security alert (an alert written by a refused call would be rolled back with it).
 * Only users' requests are limited: services and the owner are not.
 */
create function private.enforce_rate_limit(requested_operation text) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
  limits jsonb;
  window_seconds int;
  counted int;
begin
  -- Only users' requests: the role PostgREST switched to (this function runs as its owner).
  if requester is null or current_setting('role', true) is distinct from 'authenticated' then
    return;
  end if;
  select private.setting('velocity_limits') -> r.rate_level into limits
  from private.rate_limit_rules as r where r.operation = requested_operation;
  if limits is null then
    return;
  end if;
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

/** Alerts for a payment event of `amount` by `actor`: a large amount, after hours. */
create function private.check_payment_activity(
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

/** Tell `recipient` of a payment event. */
create function private.notify(
  recipient uuid,
  notification_event text,
  notification_title text,
  payment uuid default null,
  withdrawal uuid default null,
  amount bigint default null,
  notification_currency char(3) default null
) returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.notifications (
    user_id, event, title, milestone_payment_id, withdrawal_id, amount_minor, currency
  )
  values (
    recipient, notification_event, notification_title, payment, withdrawal, amount,
    notification_currency
  )
$$;

/**
 * AFTER INSERT OR UPDATE trigger on milestone_payments: notify both parties of each event,
 * and raise the alerts it calls for.
 */
create function private.milestone_payment_events() returns trigger
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

/** AFTER INSERT OR UPDATE trigger on withdrawals: notify the owner; alert on large ones. */
create function private.withdrawal_events() returns trigger
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

/** AFTER INSERT OR DELETE trigger on payment_methods: the owner hears of each change. */
create function private.payment_method_events() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.notify(new.user_id, 'payment_method.added', 'A payment method was added');
  else
    perform private.notify(old.user_id, 'payment_method.removed', 'A payment method was removed');
  end if;
  return null;
end
$$;

create trigger payment_method_events
after insert or delete on public.payment_methods
for each row execute function private.payment_method_events();

/** BEFORE trigger: the velocity limit of the operation the statement performs. */
create function private.limit_rate() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'milestone_payments' and tg_op = 'UPDATE' then
    if new.status = 'released' and old.status is distinct from 'released' then
      perform private.enforce_rate_limit('milestone_payments.release');
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
create trigger limit_rate
before insert or update of status on public.milestone_payments
for each row execute function private.limit_rate();
create trigger limit_rate
before insert on public.disputes
for each row execute function private.limit_rate();
create trigger limit_rate
before insert on public.withdrawals
for each row execute function private.limit_rate();

revoke all on function private.currency_setting(text, char) from public;
revoke all on function private.raise_security_alert(
  public.security_alert_kind, uuid, text, jsonb
) from public;
revoke all on function private.enforce_rate_limit(text) from public;
revoke all on function private.check_payment_activity(uuid, text, bigint, char) from public;
revoke all on function private.notify(uuid, text, text, uuid, uuid, bigint, char) from public;
revoke all on function private.milestone_payment_events() from public;
revoke all on function private.withdrawal_events() from public;
revoke all on function private.payment_method_events() from public;
revoke all on function private.limit_rate() from public;
