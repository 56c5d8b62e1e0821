-- Refused RPC calls leave an audit row that survives the refusal.
--
-- PostgREST runs a request in one transaction and rolls it back when the function raises,
-- which would take any record of the refusal with it. A function can instead return its
-- error: PostgREST answers with the status in `response.status` and the function's result
-- as the body, and commits. So each payment RPC is split in two:
--   * its implementation moves to `private` unchanged (same body, same grants);
--   * the public function calls it inside an exception block. When a business rule refuses
--     the call (a PT error, a privilege, constraint or data error), the block's
--     subtransaction undoes everything the call did; the function then writes an audit row
--     with success = false (and for PT429 a security alert), sets response.status to the
--     status PostgREST gives that error, and returns PostgREST's error body
--     {code, message, details, hint}. Only those rows are committed.
-- Other errors (serialization failures, deadlocks, cancellation, internal errors) are raised
-- as before, and the client sees them as it always did.
-- An HTTP client sees the same status and body as when the function raised. A client on a
-- direct connection reads `response.status` after the call, as PostgREST does.

/** The HTTP status PostgREST answers an error with (PTxyz gives xyz). */
create function private.http_status(error_state text) returns integer
language sql
stable
set search_path = ''
as $$
  select case
    when error_state ~ '^PT[1-5][0-9][0-9]$' then substr(error_state, 3)::integer
    when error_state = '42501' then
      case when current_setting('role', true) = 'anon' then 401 else 403 end
    when error_state in ('23503', '23505') then 409
    else 400
  end
$$;

/**
 * Record a refused call and answer it as PostgREST would have: an audit row with
 * success = false (the caller, the request, the parameters asked for, the error), a
 * security alert when a velocity limit refused it, response.status, and the error body.
 * Returns null when the error is not a refusal (the caller then raises it again).
 */
create function private.refused_call(
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
begin
  if not (
    error_state like 'PT%' or error_state in ('42501', 'P0001', 'P0002')
    or left(error_state, 2) in ('22', '23')
  ) then
    return null;
  end if;
  actor := private.audit_actor();
  status := private.http_status(error_state);
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, error_message, metadata
  )
  values (
    operation, entity_type, coalesce(entity_id, 'none'), actor.user_id, actor.user_role,
    actor.ip_address, actor.user_agent, parameters, false, error_message,
    actor.metadata || jsonb_build_object('sqlstate', error_state, 'http_status', status)
  );
  if error_state = 'PT429' then
    perform private.raise_security_alert(
      'velocity_limit', actor.user_id, operation,
      jsonb_build_object('refused', true, 'message', error_message)
    );
  end if;
  perform set_config('response.status', status::text, true);
  return jsonb_build_object(
    'code', error_state, 'message', error_message,
    'details', nullif(error_detail, ''), 'hint', nullif(error_hint, '')
  );
end
$$;

revoke all on function private.http_status(text) from public;
revoke all on function private.refused_call(text, text, text, jsonb, text, text, text, text)
from public;
grant execute on function private.refused_call(text, text, text, jsonb, text, text, text, text)
to authenticated, payment_service, escrow_service, admin;

alter function public.create_milestone_payment(uuid, text) set schema private;
alter function public.fund_milestone_payment(uuid, text, bigint, char, text) set schema private;
alter function public.release_milestone_payment(uuid, text) set schema private;
alter function public.cancel_milestone_payment(uuid, text) set schema private;
alter function public.open_dispute(uuid, text, text) set schema private;
alter function public.resolve_dispute(uuid, public.dispute_outcome, text, text, bigint)
set schema private;
alter function public.request_withdrawal(uuid, bigint, char, text) set schema private;
alter function public.approve_withdrawal(uuid, text) set schema private;
alter function public.complete_withdrawal(uuid, text, text) set schema private;
alter function public.fail_withdrawal(uuid, text, text) set schema private;

/** private.create_milestone_payment, with a refusal recorded and answered as above. */
create function public.create_milestone_payment(
  milestone_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.create_milestone_payment(milestone_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'create_milestone_payment', 'project_milestones', milestone_id::text,
    jsonb_build_object('milestone_id', milestone_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.create_milestone_payment(uuid, text) to authenticated;

/** private.fund_milestone_payment, with a refusal recorded and answered as above. */
create function public.fund_milestone_payment(
  milestone_payment_id uuid,
  processor_payment_intent_id text,
  amount_minor bigint,
  currency char(3),
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.fund_milestone_payment(
    milestone_payment_id, processor_payment_intent_id, amount_minor, currency, idempotency_key
  );
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'fund_milestone_payment', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id, 'processor_payment_intent_id', processor_payment_intent_id, 'amount_minor', amount_minor, 'currency', currency),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.fund_milestone_payment(uuid, text, bigint, char, text)
to payment_service;

/** private.release_milestone_payment, with a refusal recorded and answered as above. */
create function public.release_milestone_payment(
  milestone_payment_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.release_milestone_payment(milestone_payment_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'release_milestone_payment', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.release_milestone_payment(uuid, text) to authenticated;

/** private.cancel_milestone_payment, with a refusal recorded and answered as above. */
create function public.cancel_milestone_payment(
  milestone_payment_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.cancel_milestone_payment(milestone_payment_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'cancel_milestone_payment', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.cancel_milestone_payment(uuid, text) to authenticated;

/** private.open_dispute, with a refusal recorded and answered as above. */
create function public.open_dispute(
  milestone_payment_id uuid,
  reason text,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.open_dispute(milestone_payment_id, reason, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'open_dispute', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id, 'reason', reason),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.open_dispute(uuid, text, text) to authenticated;

/** private.resolve_dispute, with a refusal recorded and answered as above. */
create function public.resolve_dispute(
  dispute_id uuid,
  outcome public.dispute_outcome,
  resolution text,
  idempotency_key text,
  payee_share_minor bigint default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.resolve_dispute(dispute_id, outcome, resolution, idempotency_key, payee_share_minor);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'resolve_dispute', 'disputes', dispute_id::text,
    jsonb_build_object('dispute_id', dispute_id, 'outcome', outcome, 'resolution', resolution, 'payee_share_minor', payee_share_minor),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.resolve_dispute(uuid, public.dispute_outcome, text, text, bigint)
to admin;

/** private.request_withdrawal, with a refusal recorded and answered as above. */
create function public.request_withdrawal(
  payout_method_id uuid,
  amount_minor bigint,
  currency char(3),
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.request_withdrawal(payout_method_id, amount_minor, currency, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'request_withdrawal', 'payout_methods', payout_method_id::text,
    jsonb_build_object('payout_method_id', payout_method_id, 'amount_minor', amount_minor, 'currency', currency),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.request_withdrawal(uuid, bigint, char, text) to authenticated;

/** private.approve_withdrawal, with a refusal recorded and answered as above. */
create function public.approve_withdrawal(
  withdrawal_id uuid,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.approve_withdrawal(withdrawal_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'approve_withdrawal', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.approve_withdrawal(uuid, text) to admin;

/** private.complete_withdrawal, with a refusal recorded and answered as above. */
create function public.complete_withdrawal(
  withdrawal_id uuid,
  processor_payout_id text,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.complete_withdrawal(withdrawal_id, processor_payout_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'complete_withdrawal', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id, 'processor_payout_id', processor_payout_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.complete_withdrawal(uuid, text, text) to payment_service;

/** private.fail_withdrawal, with a refusal recorded and answered as above. */
create function public.fail_withdrawal(
  withdrawal_id uuid,
  failure_reason text,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  error_state text;
  error_message text;
  error_detail text;
  error_hint text;
  refusal jsonb;
begin
  return private.fail_withdrawal(withdrawal_id, failure_reason, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'fail_withdrawal', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id, 'failure_reason', failure_reason),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.fail_withdrawal(uuid, text, text) to payment_service;
