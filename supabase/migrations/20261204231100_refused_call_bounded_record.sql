-- A refused call's audit row holds no more than the accepted call could have stored.
--
-- private.refused_call wrote the parameters of a refused call into the append-only log as
-- they came: a refused open_dispute with a reason of 500 kB kept all 500 kB, for a column
-- that holds 5,000 characters, and so did every other text the client chose (the user
-- agent, the correlation id, an error message that repeats an argument). Each is bounded
-- now:
--   * each argument by the column the accepted call stores it in (private.
--     refused_call_argument_limit): disputes.reason and .resolution 5,000 characters,
--     withdrawals.failure_reason 500; a processor id 255 (its columns set no length, and
--     Stripe's ids are at most 255 characters); the idempotency key 255
--     (private.idempotency_keys); any other argument (ids, amounts, currencies, outcomes,
--     all far shorter) 255;
--   * the error message, and the details and hint of the answer, 1,000 characters (the
--     messages of the rules are under 300);
--   * the user agent 512 characters, and each text of the request's metadata 255 (a
--     browser's user agent is under 300, the others are ids and paths).
-- An oversized argument is replaced by a marker with its length and its SHA-256, so that
-- equal values still match; a text is cut, keeping its start, and ends with the marker.
-- The fingerprint is left out of a value with 13 digits or more, which could hide a card
-- number that a plain hash would not protect; a cut never ends inside a run of digits.
-- The helpers that every refusal calls are PL/pgSQL, and so is http_status now: an SQL
-- function with its own search_path is planned again at each call site in every
-- transaction (about 50 µs each, against 10 for PL/pgSQL).

/**
 * The most characters that a refused call of `operation` keeps of its argument `argument`:
 * the limit of the column the accepted call stores it in, else 255.
 */
create function private.refused_call_argument_limit(operation text, argument text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case operation || '.' || argument
    when 'open_dispute.reason' then 5000
    when 'resolve_dispute.resolution' then 5000
    when 'fail_withdrawal.failure_reason' then 500
    when 'fund_milestone_payment.processor_payment_intent_id' then 255
    when 'complete_withdrawal.processor_payout_id' then 255
    else 255
  end;
end
$$;

/**
 * What is kept of an oversized value: its length in characters and its SHA-256, or only
 * its length when it holds 13 digits or more (a card number's hash is not to be kept).
 */
create function private.oversized_marker(value text) returns text
language sql
immutable
strict
set search_path = ''
as $$
  select case
    when char_length(regexp_replace(value, '[^0-9０-９]', '', 'g')) >= 13
      then format('[oversized: %s characters]', char_length(value))
    else format(
      '[oversized: %s characters, sha256 %s]',
      char_length(value), encode(extensions.digest(value, 'sha256'), 'hex')
    )
  end
$$;

/**
 * An argument of a refused call as its audit row keeps it: itself when its text (a
 * string's characters, else its JSON text) is at most `max_chars` long, else the marker.
 */
create function private.bounded_argument(value jsonb, max_chars integer) returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  value_text text := coalesce(value #>> '{}', value::text);
begin
  if value is null or char_length(value_text) <= max_chars then
    return value;
  end if;
  return to_jsonb(private.oversized_marker(value_text));
end
$$;

/**
 * `value` cut to at most `max_chars` characters: its start, without a run of digits cut in
 * two, then the marker.
 */
create function private.bounded_text(value text, max_chars integer) returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  marker text;
begin
  if value is null or char_length(value) <= max_chars then
    return value;
  end if;
  marker := private.oversized_marker(value);
  return rtrim(regexp_replace(
    left(value, max_chars - char_length(marker) - 1), '[0-9０-９][0-9０-９[:space:].\-_]*$', ''
  )) || ' ' || marker;
end
$$;

/**
 * The HTTP status PostgREST answers an error with (PTxyz gives xyz), as in
 * 20261126080500_rpc_refused_calls.sql, in PL/pgSQL like the helpers above.
 */
create or replace function private.http_status(error_state text) returns integer
language plpgsql
stable
set search_path = ''
as $$
begin
  return case
    when error_state ~ '^PT[1-5][0-9][0-9]$' then substr(error_state, 3)::integer
    when error_state = '42501' then
      case when current_setting('role', true) = 'anon' then 401 else 403 end
    when error_state in ('23503', '23505') then 409
    else 400
  end;
end
$$;

/**
 * Record a refused call and answer it as PostgREST would have: an audit row with
 * success = false (the caller, the request, the parameters asked for, the error), a
 * security alert when a velocity limit refused it, response.status, and the error body.
 * Everything the client chose is bounded as this migration's header says. Returns null
 * when the error is not a refusal (the caller then raises it again).
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
begin
  if not (
    error_state like 'PT%' or error_state in ('42501', 'P0001', 'P0002')
    or left(error_state, 2) in ('22', '23')
  ) then
    return null;
  end if;
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
  if error_state = 'PT429' then
    perform private.raise_security_alert(
      'velocity_limit', actor.user_id, operation,
      jsonb_build_object('refused', true, 'message', message)
    );
  end if;
  perform set_config('response.status', status::text, true);
  return jsonb_build_object(
    'code', error_state, 'message', message,
    'details', nullif(private.bounded_text(error_detail, 1000), ''),
    'hint', nullif(private.bounded_text(error_hint, 1000), '')
  );
end
$$;

revoke all on function private.http_status(text) from public;
revoke all on function private.refused_call_argument_limit(text, text) from public;
revoke all on function private.oversized_marker(text) from public;
revoke all on function private.bounded_argument(jsonb, integer) from public;
revoke all on function private.bounded_text(text, integer) from public;
