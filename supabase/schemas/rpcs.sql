-- RPCs
--
-- The functions app clients call through PostgREST's /rpc/: each checks the caller, records and
-- counts a refused call, and runs the private function that does the work.
--
-- Sections, in this order: idempotency keys; the payment operations; refused calls; the
-- public wrappers; privileges.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/rpcs/

set local check_function_bodies = off;

-- Section: idempotency keys
--
-- The payment RPCs that app clients and services call (PostgREST's /rpc/…) are each a thin,
-- security invoker wrapper over the same table statement a client could send itself, so each
-- meets the same grants, policies and triggers, and posts the same money. What each adds is
-- an idempotency key, with Stripe's semantics: the same key with the same parameters returns
-- the first result; with other parameters it is refused (PT409). A call that fails leaves no
-- key behind, so it can be retried with the same key.

create table private.idempotency_keys (
  scope text not null,
  key text not null check (char_length(key) between 1 and 255),
  operation text not null,
  request_hash text not null,
  response jsonb not null,
  created_at timestamptz not null default now(),
  primary key (scope, key)
);

comment on table private.idempotency_keys is
'Idempotency keys per caller (the user, or the service role): what was asked, and the answer.';

/**
 * Who owns an idempotency key: the signed-in user, else the role the request runs as.
 * Computed here, not passed in, so that no one can read another's answers.
 */
create or replace function private.idempotency_scope() returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce((select auth.uid())::text, 'role:' || current_setting('role', true))
  );
end
$$;

/**
 * The stored answer of an earlier call with this key, or null when the key is new, in which
 * case it is claimed (a concurrent call with the same key waits for this one to finish).
 */
create or replace function private.idempotency_replay(
  operation text, idempotency_key text, parameters jsonb
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  hash text := encode(
    extensions.digest(operation || ':' || parameters::text, 'sha256'), 'hex'
  );
  earlier private.idempotency_keys;
begin
  if idempotency_key is null or char_length(idempotency_key) not between 1 and 255 then
    raise exception 'an idempotency key of 1 to 255 characters is required'
    using errcode = 'PT422';
  end if;
  select * into earlier from private.idempotency_keys as k
  where k.scope = private.idempotency_scope() and k.key = idempotency_key;
  if found then
    if earlier.request_hash <> hash then
      raise exception 'idempotency key % was already used with other parameters', idempotency_key
      using errcode = 'PT409', hint = 'use a new key for a new request';
    end if;
    return earlier.response;
  end if;
  -- Serialise concurrent first uses of the same key: the later one waits here, then replays.
  perform pg_advisory_xact_lock(hashtextextended(private.idempotency_scope() || idempotency_key, 0));
  select * into earlier from private.idempotency_keys as k
  where k.scope = private.idempotency_scope() and k.key = idempotency_key;
  if found then
    if earlier.request_hash <> hash then
      raise exception 'idempotency key % was already used with other parameters', idempotency_key
      using errcode = 'PT409', hint = 'use a new key for a new request';
    end if;
    return earlier.response;
  end if;
  return null;
end
$$;

/** Store the answer to a call, under its key. */
create or replace function private.idempotency_store(
  operation text, idempotency_key text, parameters jsonb, response jsonb
) returns jsonb
language sql
security definer
set search_path = ''
as $$
  insert into private.idempotency_keys (scope, key, operation, request_hash, response)
  values (
    private.idempotency_scope(), idempotency_key, operation,
    encode(extensions.digest(operation || ':' || parameters::text, 'sha256'), 'hex'), response
  )
  returning response
$$;

-- Section: the payment operations
--
-- Each runs as its caller and raises its refusals; its public wrapper (below) records and
-- answers them.

/** Pay a milestone of one's own project (the amount and the payee come from the milestone). */
create or replace function private.create_milestone_payment(milestone_id uuid, idempotency_key text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_id', milestone_id);
  answer jsonb := private.idempotency_replay('create_milestone_payment', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  insert into public.milestone_payments (milestone_id)
  values (create_milestone_payment.milestone_id)
  returning to_jsonb(milestone_payments.*) into answer;
  return private.idempotency_store('create_milestone_payment', idempotency_key, parameters, answer);
end
$$;

/**
 * Fund milestone payment `milestone_payment_id` with the processor's PaymentIntent, for
 * exactly the payment's amount and currency (PT409 otherwise): the charge is recorded in
 * payment_transactions and the payment, pending or failed (a failed payment's new attempt may
 * succeed), becomes funded. A payment that can no longer be funded (canceled meanwhile) keeps
 * the charge on record, for a refund, and moves nothing.
 */
create or replace function private.fund_milestone_payment(
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
  parameters jsonb := jsonb_build_object(
    'milestone_payment_id', milestone_payment_id,
    'processor_payment_intent_id', processor_payment_intent_id,
    'amount_minor', amount_minor,
    'currency', currency
  );
  answer jsonb := private.idempotency_replay('fund_milestone_payment', idempotency_key, parameters);
  payment public.milestone_payments;
begin
  if answer is not null then
    return answer;
  end if;
  -- Locked: a cancel racing this call either went first (seen here) or waits for it.
  select * into payment from public.milestone_payments as mp
  where mp.id = fund_milestone_payment.milestone_payment_id
  for update;
  if not found then
    raise exception 'no milestone payment % that you may fund', milestone_payment_id
    using errcode = 'PT404';
  end if;
  if (payment.amount_minor, payment.currency)
    is distinct from (fund_milestone_payment.amount_minor, fund_milestone_payment.currency) then
    raise exception 'PaymentIntent % is for % %, but milestone payment % is for % %',
    processor_payment_intent_id, amount_minor, currency,
    milestone_payment_id, payment.amount_minor, payment.currency
    using errcode = 'PT409';
  end if;
  insert into public.payment_transactions (
    user_id, type, status, amount_minor, currency, processor_transaction_id, description
  )
  values (
    payment.payer_id, 'charge', 'succeeded', fund_milestone_payment.amount_minor,
    fund_milestone_payment.currency, fund_milestone_payment.processor_payment_intent_id,
    'Milestone payment ' || milestone_payment_id
  );
  if payment.status not in ('pending', 'failed') then
    -- The processor took the money but the payment can no longer be funded (the payer
    -- canceled it meanwhile): the charge stays on record, for a refund; nothing moves here.
    return private.idempotency_store(
      'fund_milestone_payment', idempotency_key, parameters, to_jsonb(payment)
    );
  end if;
  update public.milestone_payments as mp
  set status = 'funded',
    processor_payment_intent_id = fund_milestone_payment.processor_payment_intent_id
  where mp.id = fund_milestone_payment.milestone_payment_id
  returning to_jsonb(mp.*) into answer;
  return private.idempotency_store('fund_milestone_payment', idempotency_key, parameters, answer);
end
$$;

/**
 * The payer: release a funded payment to the payee, once its milestone is submitted for
 * review (which approves the milestone).
 */
create or replace function private.release_milestone_payment(
  milestone_payment_id uuid, idempotency_key text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_payment_id', milestone_payment_id);
  answer jsonb := private.idempotency_replay(
    'release_milestone_payment', idempotency_key, parameters
  );
begin
  if answer is not null then
    return answer;
  end if;
  update public.milestone_payments as mp
  set status = 'released'
  where mp.id = release_milestone_payment.milestone_payment_id
  returning to_jsonb(mp.*) into answer;
  if answer is null then
    raise exception 'no milestone payment % that you may release', milestone_payment_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('release_milestone_payment', idempotency_key, parameters, answer);
end
$$;

/**
 * The payee: release a funded payment to oneself once the review of its submitted milestone
 * has ended with no open dispute. The payee may not update a funded payment (its update
 * policy), so this runs as the owner, on the caller's own funded payment only; the transition
 * trigger still decides, with the caller as the payee (private.milestone_payment_actor reads
 * the request's user): a review not ended, an open dispute, the escrow hold, or a large
 * payment without a recent MFA step-up refuses it.
 */
create or replace function private.release_lapsed_milestone_payment(
  milestone_payment_id uuid, idempotency_key text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_payment_id', milestone_payment_id);
  answer jsonb := private.idempotency_replay(
    'release_lapsed_milestone_payment', idempotency_key, parameters
  );
begin
  if answer is not null then
    return answer;
  end if;
  update public.milestone_payments as mp
  set status = 'released'
  where mp.id = release_lapsed_milestone_payment.milestone_payment_id
    and mp.payee_id = (select auth.uid()) and mp.status = 'funded'
  returning to_jsonb(mp.*) into answer;
  if answer is null then
    raise exception 'no milestone payment % that you may release as its payee',
    milestone_payment_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store(
    'release_lapsed_milestone_payment', idempotency_key, parameters, answer
  );
end
$$;

/** The payer: cancel a payment that is still pending. */
create or replace function private.cancel_milestone_payment(
  milestone_payment_id uuid, idempotency_key text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_payment_id', milestone_payment_id);
  answer jsonb := private.idempotency_replay(
    'cancel_milestone_payment', idempotency_key, parameters
  );
begin
  if answer is not null then
    return answer;
  end if;
  update public.milestone_payments as mp
  set status = 'canceled'
  where mp.id = cancel_milestone_payment.milestone_payment_id
  returning to_jsonb(mp.*) into answer;
  if answer is null then
    raise exception 'no milestone payment % that you may cancel', milestone_payment_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('cancel_milestone_payment', idempotency_key, parameters, answer);
end
$$;

/**
 * The contractor: submit a milestone of the project for the owner's review. The contractor
 * may not update a milestone (its update policy is the owner's), so this runs as the owner,
 * on a milestone of the caller's own project only; the review trigger still decides, with
 * the caller as the contractor (private.project_party reads the request's user).
 */
create or replace function private.submit_milestone(milestone_id uuid, idempotency_key text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_id', milestone_id);
  answer jsonb := private.idempotency_replay('submit_milestone', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.project_milestones as m
  set status = 'completed'
  where m.id = submit_milestone.milestone_id
    and private.project_party(m.project_id) = 'contractor'
  returning to_jsonb(m.*) into answer;
  if answer is null then
    raise exception 'no milestone % that you may submit', milestone_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('submit_milestone', idempotency_key, parameters, answer);
end
$$;

/** The owner: send a submitted milestone back to the contractor, with the reason. */
create or replace function private.reject_milestone(
  milestone_id uuid, reason text, idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('milestone_id', milestone_id, 'reason', reason);
  answer jsonb := private.idempotency_replay('reject_milestone', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.project_milestones as m
  set status = 'in_progress', rejection_reason = reject_milestone.reason
  where m.id = reject_milestone.milestone_id
  returning to_jsonb(m.*) into answer;
  if answer is null then
    raise exception 'no milestone % that you may reject', milestone_id
    using errcode = 'PT404';
  end if;
  return private.idempotency_store('reject_milestone', idempotency_key, parameters, answer);
end
$$;

/** A party: dispute a funded payment. */
create or replace function private.open_dispute(
  milestone_payment_id uuid, reason text, idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'milestone_payment_id', milestone_payment_id, 'reason', reason
  );
  answer jsonb := private.idempotency_replay('open_dispute', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  insert into public.disputes (milestone_payment_id, reason)
  values (open_dispute.milestone_payment_id, open_dispute.reason)
  returning to_jsonb(disputes.*) into answer;
  return private.idempotency_store('open_dispute', idempotency_key, parameters, answer);
end
$$;

/**
 * Resolve a dispute: record the decision, which settles its payment in the same statement
 * (settle_disputed_milestone_payment). The same key with the same parameters replays the
 * first answer; a dispute already closed is refused by its trigger (PT409).
 */
create or replace function private.resolve_dispute(
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
  parameters jsonb := jsonb_build_object(
    'dispute_id', dispute_id, 'outcome', outcome, 'resolution', resolution,
    'payee_share_minor', payee_share_minor
  );
  answer jsonb := private.idempotency_replay('resolve_dispute', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.disputes as d
  set status = 'resolved', outcome = resolve_dispute.outcome,
    payee_share_minor = resolve_dispute.payee_share_minor,
    resolution = resolve_dispute.resolution
  where d.id = resolve_dispute.dispute_id
  returning to_jsonb(d.*) into answer;
  if answer is null then
    raise exception 'no dispute % that you may resolve', dispute_id using errcode = 'PT404';
  end if;
  return private.idempotency_store('resolve_dispute', idempotency_key, parameters, answer);
end
$$;

/** The owner (aal2): withdraw from their wallet to one of their payout methods. */
create or replace function private.request_withdrawal(
  payout_method_id uuid, amount_minor bigint, currency char(3), idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'payout_method_id', payout_method_id, 'amount_minor', amount_minor, 'currency', currency
  );
  answer jsonb := private.idempotency_replay('request_withdrawal', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  insert into public.withdrawals (payout_method_id, amount_minor, currency)
  values (
    request_withdrawal.payout_method_id, request_withdrawal.amount_minor,
    request_withdrawal.currency
  )
  returning to_jsonb(withdrawals.*) into answer;
  return private.idempotency_store('request_withdrawal', idempotency_key, parameters, answer);
end
$$;

/** payment_service: the payout succeeded; the reservation is posted. */
create or replace function private.complete_withdrawal(
  withdrawal_id uuid, processor_payout_id text, idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'withdrawal_id', withdrawal_id, 'processor_payout_id', processor_payout_id
  );
  answer jsonb := private.idempotency_replay('complete_withdrawal', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.withdrawals as w set status = 'processing'
  where w.id = complete_withdrawal.withdrawal_id and w.status = 'approved';
  update public.withdrawals as w
  set status = 'paid', processor_payout_id = complete_withdrawal.processor_payout_id
  where w.id = complete_withdrawal.withdrawal_id
  returning to_jsonb(w.*) into answer;
  if answer is null then
    raise exception 'no withdrawal % that you may complete', withdrawal_id using errcode = 'PT404';
  end if;
  return private.idempotency_store('complete_withdrawal', idempotency_key, parameters, answer);
end
$$;

/** payment_service: the payout failed; the reservation is voided. */
create or replace function private.fail_withdrawal(
  withdrawal_id uuid, failure_reason text, idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object(
    'withdrawal_id', withdrawal_id, 'failure_reason', failure_reason
  );
  answer jsonb := private.idempotency_replay('fail_withdrawal', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  update public.withdrawals as w set status = 'processing'
  where w.id = fail_withdrawal.withdrawal_id and w.status = 'approved';
  update public.withdrawals as w
  set status = 'failed', failure_reason = fail_withdrawal.failure_reason
  where w.id = fail_withdrawal.withdrawal_id
  returning to_jsonb(w.*) into answer;
  if answer is null then
    raise exception 'no withdrawal % that you may fail', withdrawal_id using errcode = 'PT404';
  end if;
  return private.idempotency_store('fail_withdrawal', idempotency_key, parameters, answer);
end
$$;

-- Section: refused calls
--
-- Refused RPC calls leave an audit row that survives the refusal. PostgREST runs a request in
-- one transaction and rolls it back when the function raises, which would take any record of
-- the refusal with it; a function can instead return its error: PostgREST answers with the
-- status in `response.status` and the function's result as the body, and commits. So each
-- payment RPC is in two parts: its implementation in `private` (above), and the public
-- function, which calls it inside an exception block. When a business rule refuses the call
-- (a PT error, a privilege, constraint or data error), the block's subtransaction undoes
-- everything the call did; private.refused_call then counts the refusal against the caller's
-- velocity limit, writes an audit row with success = false (and past the limit a security
-- alert), sets response.status to the status PostgREST gives that error, and returns
-- PostgREST's error body {code, message, details, hint}. Only those rows are committed. Other
-- errors (serialization failures, deadlocks, cancellation, internal errors) are raised. An
-- HTTP client sees the same status and body as when the function raised; a client on a direct
-- connection reads `response.status` after the call, as PostgREST does.
--
-- Only the RPC that refused a call records it, and only what it observed: the wrappers run as
-- their caller, so every role that may call one holds EXECUTE on private.refused_call, and a
-- direct connection could otherwise record content of its own choosing. private.refused_call
-- checks the frame above its own in the call stack (GET DIAGNOSTICS … PG_CONTEXT): it must be
-- the public function named by its `operation` argument. Only the owner creates functions in
-- `public`, and a function compiled with an empty search_path, as every wrapper is, is named
-- schema-qualified in that stack, while a caller's own function (in pg_temp), a DO block or a
-- dynamic statement is named otherwise. Any other caller is refused with 42501 and records
-- nothing. What a refusal writes is bounded (private.bounded_argument, private.bounded_text),
-- and the functions that write alerts and counts are executable by their owner only.

/** The HTTP status PostgREST answers an error with (PTxyz gives xyz), in PL/pgSQL. */
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
 * Record a refused call and answer it as PostgREST would have: the call counted against the
 * caller's velocity limit, an audit row with success = false (the caller, the request, the
 * parameters asked for, the error, each bounded), response.status, and the error body. Over
 * the limit, the answer is 429, and only the first refusal of the window is recorded, with one
 * alert per caller, operation and window: the later ones count in its alert. The caller it
 * counts, alerts and records against is the one private.count_call worked out: the requesting
 * user, or no user for a user's request whose token names none (they share one counter).
 * Returns null when the error is not a refusal (the caller then raises it again). Only the
 * public wrapper named `operation` may record a refusal, its own: any other caller is refused
 * (42501).
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

/**
 * The user a request as `authenticated` is counted against: its token's sub when that names
 * a user, else null (no sub, or the sub of no user), the shared counter of such requests.
 */
create or replace function private.counted_caller() returns uuid
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

/**
 * Count a refused call of `requested_operation` by the requesting user (or, for a user's
 * request whose token names no user, in their shared counter) in the current window of its
 * limit, in the counter that private.enforce_rate_limit counts accepted calls in: whom it
 * counted, the calls counted so far (this one included), the limit, the window, and the
 * alert of refusals over it. Counted and limit null when the call is not limited (services,
 * staff and the owner are not, nor an operation without a rule). The counter row stays
 * locked until the request ends.
 */
create or replace function private.count_call(
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

comment on column private.rate_limit_counters.user_id is
'The user counted; null for the requests as authenticated whose token names no user, which '
'share one counter per operation and window.';

/**
 * The most characters that a refused call of `operation` keeps of its argument `argument`:
 * the limit of the column the accepted call stores it in (a withdrawal approval's reason, the
 * resolution of a processor inconsistency: 2000), else 255.
 */
create or replace function private.refused_call_argument_limit(operation text, argument text)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case operation || '.' || argument
    when 'open_dispute.reason' then 5000
    when 'reject_milestone.reason' then 2000
    when 'resolve_dispute.resolution' then 5000
    when 'approve_withdrawal.reason' then 2000
    when 'resolve_processor_inconsistency.resolution' then 2000
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
create or replace function private.oversized_marker(value text) returns text
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
create or replace function private.bounded_argument(value jsonb, max_chars integer) returns jsonb
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
create or replace function private.bounded_text(value text, max_chars integer) returns text
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

-- Section: the public wrappers
--
-- What clients call: each runs its private function and, when that refuses the call, records
-- and answers the refusal (private.refused_call).

/** private.create_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.create_milestone_payment(
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

/** private.fund_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.fund_milestone_payment(
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

/** private.release_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.release_milestone_payment(
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

/** private.release_lapsed_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.release_lapsed_milestone_payment(
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
  return private.release_lapsed_milestone_payment(milestone_payment_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'release_lapsed_milestone_payment', 'milestone_payments', milestone_payment_id::text,
    jsonb_build_object('milestone_payment_id', milestone_payment_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

/** private.cancel_milestone_payment, with a refusal recorded and answered as above. */
create or replace function public.cancel_milestone_payment(
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

/** private.submit_milestone, with a refusal recorded and answered as above. */
create or replace function public.submit_milestone(
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
  return private.submit_milestone(milestone_id, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'submit_milestone', 'project_milestones', milestone_id::text,
    jsonb_build_object('milestone_id', milestone_id),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

/** private.reject_milestone, with a refusal recorded and answered as above. */
create or replace function public.reject_milestone(
  milestone_id uuid,
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
  return private.reject_milestone(milestone_id, reason, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'reject_milestone', 'project_milestones', milestone_id::text,
    jsonb_build_object('milestone_id', milestone_id, 'reason', reason),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

/** private.open_dispute, with a refusal recorded and answered as above. */
create or replace function public.open_dispute(
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

/** private.resolve_dispute, with a refusal recorded and answered as above. */
create or replace function public.resolve_dispute(
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

/** private.request_withdrawal, with a refusal recorded and answered as above. */
create or replace function public.request_withdrawal(
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

/** private.complete_withdrawal, with a refusal recorded and answered as above. */
create or replace function public.complete_withdrawal(
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

/** private.fail_withdrawal, with a refusal recorded and answered as above. */
create or replace function public.fail_withdrawal(
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

-- Section: privileges

grant execute on function cancel_milestone_payment(uuid, text) to authenticated;

grant execute on function complete_withdrawal(uuid, text, text) to payment_service;

grant execute on function create_milestone_payment(uuid, text) to authenticated;

grant execute on function fail_withdrawal(uuid, text, text) to payment_service;

grant execute on function fund_milestone_payment(
  uuid, text, bigint, character, text
) to payment_service;

grant execute on function open_dispute(uuid, text, text) to authenticated;

grant execute on function private.cancel_milestone_payment(uuid, text) to authenticated;

grant execute on function private.cancel_milestone_payment(uuid, text) to service_role;

grant execute on function private.complete_withdrawal(uuid, text, text) to payment_service;

grant execute on function private.complete_withdrawal(uuid, text, text) to service_role;

grant execute on function private.create_milestone_payment(uuid, text) to authenticated;

grant execute on function private.create_milestone_payment(uuid, text) to service_role;

grant execute on function private.fail_withdrawal(uuid, text, text) to payment_service;

grant execute on function private.fail_withdrawal(uuid, text, text) to service_role;

grant execute on function private.fund_milestone_payment(
  uuid, text, bigint, character, text
) to payment_service;

grant execute on function private.fund_milestone_payment(
  uuid, text, bigint, character, text
) to service_role;

grant execute on function private.idempotency_replay(text, text, jsonb) to admin;

grant execute on function private.idempotency_replay(text, text, jsonb) to authenticated;

grant execute on function private.idempotency_replay(text, text, jsonb) to escrow_service;

grant execute on function private.idempotency_replay(text, text, jsonb) to payment_service;

grant execute on function private.idempotency_store(text, text, jsonb, jsonb) to admin;

grant execute on function private.idempotency_store(text, text, jsonb, jsonb) to authenticated;

grant execute on function private.idempotency_store(text, text, jsonb, jsonb) to escrow_service;

grant execute on function private.idempotency_store(text, text, jsonb, jsonb) to payment_service;

grant execute on function private.open_dispute(uuid, text, text) to authenticated;

grant execute on function private.open_dispute(uuid, text, text) to service_role;

grant execute on function private.refused_call(
  text, text, text, jsonb, text, text, text, text
) to admin;

grant execute on function private.refused_call(
  text, text, text, jsonb, text, text, text, text
) to authenticated;

grant execute on function private.refused_call(
  text, text, text, jsonb, text, text, text, text
) to escrow_service;

grant execute on function private.refused_call(
  text, text, text, jsonb, text, text, text, text
) to payment_service;

grant execute on function private.refused_call(
  text, text, text, jsonb, text, text, text, text
) to service_role;

grant execute on function private.reject_milestone(uuid, text, text) to authenticated;

grant execute on function private.reject_milestone(uuid, text, text) to service_role;

grant execute on function private.release_lapsed_milestone_payment(uuid, text) to authenticated;

grant execute on function private.release_lapsed_milestone_payment(uuid, text) to service_role;

grant execute on function private.release_milestone_payment(uuid, text) to authenticated;

grant execute on function private.release_milestone_payment(uuid, text) to service_role;

grant execute on function private.request_withdrawal(
  uuid, bigint, character, text
) to authenticated;

grant execute on function private.request_withdrawal(uuid, bigint, character, text) to service_role;

grant execute on function private.resolve_dispute(
  uuid, dispute_outcome, text, text, bigint
) to admin;

grant execute on function private.resolve_dispute(
  uuid, dispute_outcome, text, text, bigint
) to escrow_service;

grant execute on function private.resolve_dispute(
  uuid, dispute_outcome, text, text, bigint
) to service_role;

grant execute on function private.submit_milestone(uuid, text) to authenticated;

grant execute on function private.submit_milestone(uuid, text) to service_role;

grant execute on function reject_milestone(uuid, text, text) to authenticated;

grant execute on function release_lapsed_milestone_payment(uuid, text) to authenticated;

grant execute on function release_milestone_payment(uuid, text) to authenticated;

grant execute on function request_withdrawal(uuid, bigint, character, text) to authenticated;

grant execute on function resolve_dispute(uuid, dispute_outcome, text, text, bigint) to admin;

grant execute on function resolve_dispute(
  uuid, dispute_outcome, text, text, bigint
) to escrow_service;

grant execute on function submit_milestone(uuid, text) to authenticated;
