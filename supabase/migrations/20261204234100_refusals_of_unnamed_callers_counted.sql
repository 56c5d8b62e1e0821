-- A user's request whose token names no user has its refused calls counted too.
--
-- The velocity limits counted a request only when its token's sub was set: a request as
-- `authenticated` without a sub (on a direct connection, a session sets request.jwt.claims
-- as it likes) was never counted, so its refusals were each recorded without bound (40
-- refused open_dispute calls, 40 audit rows, no 429). A sub that names no user (a made-up
-- one, or a deleted user's still-valid token) failed the counters' foreign key inside
-- private.refused_call: the request was answered with that internal error (naming
-- private.rate_limit_counters) and nothing was recorded.
--
-- Now every request as `authenticated` is counted: against its user when its sub names one,
-- otherwise against no user, in one counter that all such requests share (user_id null, one
-- row per operation and window: the key treats nulls as equal). Their refusals past the
-- limit are answered 429 and summed in one alert with no user, like any user's; their
-- accepted writes (which row-level security refuses anyway) meet the same limit.
-- private.count_call tells the caller whom it counted, and refused_call records the alert
-- against that caller rather than the raw sub.

alter table private.rate_limit_counters drop constraint rate_limit_counters_pkey;

alter table private.rate_limit_counters alter column user_id drop not null;

alter table private.rate_limit_counters
add constraint rate_limit_counters_user_id_operation_window_start_key
unique nulls not distinct (user_id, operation, window_start);

comment on column private.rate_limit_counters.user_id is
'The user counted; null for the requests as authenticated whose token names no user, which '
'share one counter per operation and window.';

/**
 * The user a request as `authenticated` is counted against: its token's sub when that names
 * a user, else null (no sub, or the sub of no user), the shared counter of such requests.
 */
create function private.counted_caller() returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
begin
  if requester is not null and exists (select from public.users as u where u.id = requester) then
    return requester;
  end if;
  return null;
end
$$;

revoke all on function private.counted_caller() from public;

drop function private.count_call(text);

/**
 * Count a refused call of `requested_operation` by the requesting user (or, for a user's
 * request whose token names no user, in their shared counter) in the current window of its
 * limit, in the counter that private.enforce_rate_limit counts accepted calls in: whom it
 * counted, the calls counted so far (this one included), the limit, the window, and the
 * alert of refusals over it. Counted and limit null when the call is not limited (services,
 * staff and the owner are not, nor an operation without a rule). The counter row stays
 * locked until the request ends.
 */
create function private.count_call(
  requested_operation text,
  out caller uuid,
  out counted integer,
  out max_calls integer,
  out window_seconds integer,
  out window_opened_at timestamptz,
  out refusal_alert_id uuid
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  limits jsonb;
begin
  -- Only users' requests: the role PostgREST switched to (this function runs as its owner).
  if current_setting('role', true) is distinct from 'authenticated' then
    return;
  end if;
  caller := private.counted_caller();
  select private.setting('velocity_limits') -> r.rate_level into limits
  from private.rate_limit_rules as r where r.operation = requested_operation;
  if limits is null then
    return;
  end if;
  max_calls := (limits ->> 'calls')::integer;
  window_seconds := (limits ->> 'seconds')::integer;
  window_opened_at := to_timestamp(
    floor(extract(epoch from now()) / window_seconds) * window_seconds
  );
  insert into private.rate_limit_counters as c (user_id, operation, window_start, call_count)
  values (caller, requested_operation, window_opened_at, 1)
  on conflict (user_id, operation, window_start) do update set call_count = c.call_count + 1
  returning c.call_count, c.refusal_alert_id into counted, refusal_alert_id;
end
$$;

revoke all on function private.count_call(text) from public;

/**
 * The velocity limit of `requested_operation` for the requesting user's call, as in
 * 20261126071500_notifications_and_alerts.sql; a user's request whose token names no user
 * is counted in the shared counter of such requests.
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

/**
 * Record a refused call and answer it as PostgREST would have, as in
 * 20261204231300_refused_call_only_from_wrappers.sql: only for the public wrapper named
 * `operation`, counted against the caller's velocity limit, 429 past it with one alert per
 * caller, operation and window. The caller it counts, alerts and records against is the one
 * private.count_call worked out: the requesting user, or no user for a user's request whose
 * token names none (they share one counter).
 */
create or replace function private.refused_call(
  operation text,
  entity_type text,
  entity_id text,
  parameters jsonb,
  error_state text,
  error_message text,
  error_detail text,
  error_hint text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  stack text;
  own_frame text;
  caller_frame text;
  actor private.audit_actor;
  status integer;
  recorded jsonb;
  message text := private.bounded_text(error_message, 1000);
  detail text := private.bounded_text(error_detail, 1000);
  hint text := private.bounded_text(error_hint, 1000);
  limited text;
  rate record;
  alert uuid;
begin
  if not (
    error_state like 'PT%' or error_state in ('42501', 'P0001', 'P0002')
    or left(error_state, 2) in ('22', '23')
  ) then
    return null;
  end if;
  -- The frame that called this function must be the wrapper's: a function that only its
  -- owner can create in public, whose context names it schema-qualified (it runs with an
  -- empty search_path). Any other caller's frame starts otherwise: a DO block
  -- (inline_code_block), a function of the caller's own (pg_temp_N.…), an SQL statement.
  -- The frames read "PL/pgSQL function <name>(<types>) line …" in the server's language:
  -- what comes before the name is taken from this function's own frame, the first line.
  get diagnostics stack = pg_context;
  own_frame := split_part(stack, e'\n', 1);
  caller_frame := left(own_frame, strpos(own_frame, 'private.refused_call(') - 1)
    || 'public.' || operation || '(';
  if strpos(own_frame, 'private.refused_call(') = 0 or left(
    split_part(stack, e'\n', 2), char_length(caller_frame)
  ) is distinct from caller_frame then
    raise exception 'a refused call is recorded only by the RPC that refused it'
    using errcode = '42501',
    hint = 'private.refused_call is called by the public RPC wrappers, never directly';
  end if;
  select r.operation into limited
  from private.rate_limit_rules as r where r.rpc = refused_call.operation;
  select * into rate from private.count_call(limited);
  if rate.counted = rate.max_calls then
    perform private.raise_security_alert(
      'velocity_limit', rate.caller, limited,
      jsonb_build_object('calls', rate.counted, 'window_seconds', rate.window_seconds)
    );
  elsif rate.counted > rate.max_calls then
    error_state := 'PT429';
    message := private.rate_limit_message(limited, rate.max_calls, rate.window_seconds);
    detail := null;
    hint := 'wait for the window to pass, then retry';
    update public.security_alerts as a
    set details = a.details || jsonb_build_object(
      'refused_calls', (a.details ->> 'refused_calls')::integer + 1, 'last_refused_at', now()
    )
    where a.id = rate.refusal_alert_id;
    if found then
      perform set_config('response.status', '429', true);
      return jsonb_build_object('code', error_state, 'message', message, 'details', null, 'hint', hint);
    end if;
    insert into public.security_alerts (kind, user_id, operation, details)
    values (
      'velocity_limit', rate.caller, operation,
      jsonb_build_object(
        'refused', true, 'refused_calls', 1, 'message', message, 'calls', rate.max_calls,
        'window_seconds', rate.window_seconds, 'window_start', rate.window_opened_at,
        'last_refused_at', now()
      )
    )
    returning id into alert;
    update private.rate_limit_counters as c
    set refusal_alert_id = alert
    where c.user_id is not distinct from rate.caller and c.operation = limited
      and c.window_start = rate.window_opened_at;
  end if;
  -- Who asked, from where: worked out only for a refusal that is recorded.
  actor := private.audit_actor();
  actor.user_agent := private.bounded_text(actor.user_agent, 512);
  select coalesce(jsonb_object_agg(
    m.key,
    case when jsonb_typeof(m.value) = 'string'
      then to_jsonb(private.bounded_text(m.value #>> '{}', 255))
      else m.value
    end
  ), '{}')
  into actor.metadata
  from jsonb_each(actor.metadata) as m;
  if jsonb_typeof(parameters) = 'object' then
    select coalesce(jsonb_object_agg(
      p.key,
      private.bounded_argument(p.value, private.refused_call_argument_limit(operation, p.key))
    ), '{}')
    into recorded
    from jsonb_each(parameters) as p;
  else
    recorded := private.bounded_argument(parameters, 255);
  end if;
  status := private.http_status(error_state);
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, error_message, metadata
  )
  values (
    operation, entity_type, coalesce(private.bounded_text(entity_id, 255), 'none'),
    actor.user_id, actor.user_role, actor.ip_address, actor.user_agent, recorded, false,
    message,
    actor.metadata || jsonb_build_object('sqlstate', error_state, 'http_status', status)
  );
  perform set_config('response.status', status::text, true);
  return jsonb_build_object(
    'code', error_state, 'message', message,
    'details', nullif(detail, ''), 'hint', nullif(hint, '')
  );
end
$$;

revoke all on function private.refused_call(text, text, text, jsonb, text, text, text, text)
from public;
grant execute on function private.refused_call(text, text, text, jsonb, text, text, text, text)
to authenticated, payment_service, escrow_service, admin, service_role;
