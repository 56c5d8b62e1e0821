-- The payment RPCs that app clients and services call (PostgREST's /rpc/…).
--
-- Each is a thin, security invoker wrapper over the same table statement a client could
-- send itself, so it meets the same grants, policies and triggers, and posts the same money.
-- What each adds is an idempotency key, with Stripe's semantics: the same key with the same
-- parameters returns the first result; with other parameters it is refused (PT409). A call
-- that fails leaves no key behind, so it can be retried with the same key.

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
create function private.idempotency_scope() returns text
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select auth.uid())::text, 'role:' || current_setting('role', true))
$$;

/**
 * The stored answer of an earlier call with this key, or null when the key is new, in which
 * case it is claimed (a concurrent call with the same key waits for this one to finish).
 */
create function private.idempotency_replay(
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
create function private.idempotency_store(
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

revoke all on function private.idempotency_scope() from public;
revoke all on function private.idempotency_replay(text, text, jsonb) from public;
revoke all on function private.idempotency_store(text, text, jsonb, jsonb) from public;
grant execute on function private.idempotency_replay(text, text, jsonb)
to authenticated, payment_service, escrow_service, admin;
grant execute on function private.idempotency_store(text, text, jsonb, jsonb)
to authenticated, payment_service, escrow_service, admin;

/** Pay a milestone of one's own project (the amount and the payee come from the milestone). */
create function public.create_milestone_payment(milestone_id uuid, idempotency_key text)
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
 * payment_service: a PaymentIntent succeeded for a pending payment. Records the processor's
 * charge (its id, amount and currency, as the processor reported them) and marks the
 * payment funded; an amount or currency that differs from the payment's is refused.
 */
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
  if payment.status <> 'pending' then
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

/** The payer: release a funded payment to the payee. */
create function public.release_milestone_payment(milestone_payment_id uuid, idempotency_key text)
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

/** The payer: cancel a payment that is still pending. */
create function public.cancel_milestone_payment(milestone_payment_id uuid, idempotency_key text)
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

/** A party: dispute a funded payment. */
create function public.open_dispute(
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
 * Admin: resolve an open dispute: release the payment to the payee, refund it to the payer,
 * or split it (`payee_share_minor` to the payee, the rest back). The dispute and the
 * payment change together.
 */
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
  parameters jsonb := jsonb_build_object(
    'dispute_id', dispute_id, 'outcome', outcome, 'resolution', resolution,
    'payee_share_minor', payee_share_minor
  );
  answer jsonb := private.idempotency_replay('resolve_dispute', idempotency_key, parameters);
  payment uuid;
begin
  if answer is not null then
    return answer;
  end if;
  update public.disputes as d
  set status = 'resolved', outcome = resolve_dispute.outcome,
    payee_share_minor = resolve_dispute.payee_share_minor,
    resolution = resolve_dispute.resolution
  where d.id = resolve_dispute.dispute_id and d.status = 'open'
  returning d.milestone_payment_id, to_jsonb(d.*) into payment, answer;
  if answer is null then
    raise exception 'no open dispute % that you may resolve', dispute_id using errcode = 'PT404';
  end if;
  update public.milestone_payments as mp
  set status = case outcome
    when 'release' then 'released' when 'refund' then 'refunded' else 'split'
  end::public.milestone_payment_status
  where mp.id = payment;
  return private.idempotency_store('resolve_dispute', idempotency_key, parameters, answer);
end
$$;

/** The owner (aal2): withdraw from their wallet to one of their payout methods. */
create function public.request_withdrawal(
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

/** Admin: approve a large withdrawal (it is approved once two distinct admins have). */
create function public.approve_withdrawal(withdrawal_id uuid, idempotency_key text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('withdrawal_id', withdrawal_id);
  answer jsonb := private.idempotency_replay('approve_withdrawal', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  insert into public.withdrawal_approvals (withdrawal_id)
  values (approve_withdrawal.withdrawal_id)
  returning to_jsonb(withdrawal_approvals.*) into answer;
  return private.idempotency_store('approve_withdrawal', idempotency_key, parameters, answer);
end
$$;

/** payment_service: the payout succeeded; the reservation is posted. */
create function public.complete_withdrawal(
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
create function public.fail_withdrawal(
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

grant execute on function public.create_milestone_payment(uuid, text) to authenticated;
grant execute on function public.fund_milestone_payment(uuid, text, bigint, char, text)
to payment_service;
grant execute on function public.release_milestone_payment(uuid, text) to authenticated;
grant execute on function public.cancel_milestone_payment(uuid, text) to authenticated;
grant execute on function public.open_dispute(uuid, text, text) to authenticated;
grant execute on function public.resolve_dispute(
  uuid, public.dispute_outcome, text, text, bigint
) to admin;
grant execute on function public.request_withdrawal(uuid, bigint, char, text) to authenticated;
grant execute on function public.approve_withdrawal(uuid, text) to admin;
grant execute on function public.complete_withdrawal(uuid, text, text) to payment_service;
grant execute on function public.fail_withdrawal(uuid, text, text) to payment_service;
