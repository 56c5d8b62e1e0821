-- Only the RPC that refused a call records it, and only what it observed.
--
-- private.refused_call writes an audit row and (over a velocity limit) a security alert,
-- as its owner. The RPC wrappers run as their caller (security invoker, so that the
-- policies apply), so every role that may call a wrapper holds EXECUTE on it, and an
-- `authenticated` session on a direct connection could call it with content of its own
-- choosing: any operation, any entity, any parameters and error. PostgREST does not expose
-- `private`, but that must not be what keeps the log true.
--
-- It now checks who called it: the frame above its own in the call stack (GET DIAGNOSTICS
-- … PG_CONTEXT) must be the public function named by its `operation` argument, in the
-- words its own frame is written in (the server's language for messages). Only the
-- owner creates functions in `public`; a function compiled with an empty search_path, as
-- every wrapper is, is named schema-qualified in that stack, and a caller's own function
-- (in pg_temp), a DO block or a dynamic statement is named otherwise. The wrapper calls it
-- only from its exception handler, with its own arguments and the error it caught, so what
-- is recorded is what the wrapper observed. A direct call, a call from a DO block, from a
-- function of the caller's, or a call naming another operation than its caller's is
-- refused with 42501 and records nothing. An error that is not a refusal still returns
-- null (nothing recorded) whoever asks. What a refusal may write is bounded (20261204231100)
-- and counted against the caller's limits (20261204231200); the functions that write
-- alerts and counts (raise_security_alert, count_call) are executable by their owner only.
--
-- EXECUTE on refused_call is kept for exactly the roles that may call a wrapper, and given
-- to service_role, which may call them too (its refusals failed to be recorded).

/**
 * Record a refused call and answer it as PostgREST would have: the call counted against
 * the caller's velocity limit (its own count went with it), an audit row with
 * success = false (the caller, the request, the parameters asked for, the error, each
 * bounded as in 20261204231100_refused_call_bounded_record.sql), response.status, and the
 * error body. Over the limit, the answer is 429, and only the first refusal of the window
 * is recorded: the later ones count in its security alert. Returns null when the error is
 * not a refusal (the caller then raises it again). Only the public wrapper named
 * `operation` may record a refusal, its own: any other caller is refused (42501).
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

revoke all on function private.refused_call(text, text, text, jsonb, text, text, text, text)
from public;
grant execute on function private.refused_call(text, text, text, jsonb, text, text, text, text)
to authenticated, payment_service, escrow_service, admin, service_role;
