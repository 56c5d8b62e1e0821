-- Refused calls count towards the caller's velocity limits, and over the limit they leave
-- one alert, not one audit row each.
--
-- A call's count is taken by the limit_rate trigger, inside the call; a refused RPC call
-- undoes everything it did, its count included, while its audit row commits. So 45 refused
-- calls in a row all answered 403, none 429, and wrote 45 audit rows: the refusals escaped
-- the limits, and the log could be flooded. Now:
--   * each RPC that a user calls is named beside the operation whose limit it meets
--     (private.rate_limit_rules.rpc): create_milestone_payment milestone_payments.insert
--     (Medium), release_milestone_payment milestone_payments.release (High), open_dispute
--     disputes.insert (Medium), request_withdrawal withdrawals.insert (High), as in the
--     endpoint matrix; cancel_milestone_payment, which the matrix does not list, meets a new
--     operation, milestone_payments.cancel, at Medium like the creation it undoes (the
--     limit_rate trigger counts accepted cancels too). The staff's and the services' RPCs
--     are not limited, as before: only users' requests are;
--   * private.refused_call counts the refused call again, once its own count was undone,
--     against the same window: an accepted call and a refused one count alike;
--   * the refused call that reaches the limit raises the velocity alert that an accepted one
--     raises; one over the limit is answered 429 (PT429, the limit's message), whatever
--     refused it. The first in a window is recorded (an audit row) with one security alert,
--     which every later refusal of that caller, operation and window updates in place (its
--     count of refused calls) instead of writing an audit row.
-- Concurrent calls of one user and operation take the window's counter row in turn (the
-- counting insert … on conflict locks it until the request ends), so two refusals never
-- both create the alert, and each sees the other's count.

alter table private.rate_limit_rules add column rpc text unique;

comment on column private.rate_limit_rules.rpc is
'The public RPC that performs the operation: its refused calls count against this limit.';

insert into private.rate_limit_rules (operation, rate_level)
values ('milestone_payments.cancel', 'medium');

update private.rate_limit_rules as r
set rpc = m.rpc
from (
  values
  ('milestone_payments.insert', 'create_milestone_payment'),
  ('milestone_payments.release', 'release_milestone_payment'),
  ('milestone_payments.cancel', 'cancel_milestone_payment'),
  ('disputes.insert', 'open_dispute'),
  ('withdrawals.insert', 'request_withdrawal')
) as m (operation, rpc)
where r.operation = m.operation;

alter table private.rate_limit_counters add column refusal_alert_id uuid;

comment on column private.rate_limit_counters.refusal_alert_id is
'The security alert that counts the refused calls over the limit in this window.';

/** The message of a call refused over a velocity limit, as private.enforce_rate_limit says it. */
create function private.rate_limit_message(
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

/**
 * Count a refused call of `requested_operation` by the requesting user in the current
 * window of its limit, in the counter that private.enforce_rate_limit counts accepted calls
 * in (the same window, the same row): the calls counted so far (this one included), the
 * limit, the window, and the alert of refusals over it. All null when the call is not
 * limited (services and the owner are not, nor an operation without a rule). The counter
 * row stays locked until the request ends. enforce_rate_limit keeps its own copy of these
 * few lines: it runs in every limited write, where another function call costs about 15 µs.
 */
create function private.count_call(
  requested_operation text,
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
  requester uuid := (select auth.uid());
  limits jsonb;
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
  max_calls := (limits ->> 'calls')::integer;
  window_seconds := (limits ->> 'seconds')::integer;
  window_opened_at := to_timestamp(
    floor(extract(epoch from now()) / window_seconds) * window_seconds
  );
  insert into private.rate_limit_counters as c (user_id, operation, window_start, call_count)
  values (requester, requested_operation, window_opened_at, 1)
  on conflict (user_id, operation, window_start) do update set call_count = c.call_count + 1
  returning c.call_count, c.refusal_alert_id into counted, refusal_alert_id;
end
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
  else
    perform private.enforce_rate_limit(tg_table_name || '.' || lower(tg_op));
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

/**
 * Record a refused call and answer it as PostgREST would have: the call counted against
 * the caller's velocity limit (its own count went with it), an audit row with
 * success = false (the caller, the request, the parameters asked for, the error, each
 * bounded as in 20261204231100_refused_call_bounded_record.sql), response.status, and the
 * error body. Over the limit, the answer is 429, and only the first refusal of the window
 * is recorded: the later ones count in its security alert. Returns null when the error is
 * not a refusal (the caller then raises it again).
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
  select r.operation into limited
  from private.rate_limit_rules as r where r.rpc = refused_call.operation;
  select * into rate from private.count_call(limited);
  if rate.counted = rate.max_calls then
    perform private.raise_security_alert(
      'velocity_limit', (select auth.uid()), limited,
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
      'velocity_limit', (select auth.uid()), operation,
      jsonb_build_object(
        'refused', true, 'refused_calls', 1, 'message', message, 'calls', rate.max_calls,
        'window_seconds', rate.window_seconds, 'window_start', rate.window_opened_at,
        'last_refused_at', now()
      )
    )
    returning id into alert;
    update private.rate_limit_counters as c
    set refusal_alert_id = alert
    where c.user_id = (select auth.uid()) and c.operation = limited
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

revoke all on function private.rate_limit_message(text, integer, integer) from public;
revoke all on function private.count_call(text) from public;
