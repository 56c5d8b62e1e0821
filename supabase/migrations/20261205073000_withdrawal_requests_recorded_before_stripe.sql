-- A transfer or payout that may exist at the processor is recorded before it is asked for.
--
-- The payouts function called the processor and then recorded its answer: a transfer the
-- processor made whose answer was lost (a network cut, a timeout, the runtime stopping the
-- run) was recorded nowhere. An admin could then cancel the still-approved withdrawal, and
-- with no transfer recorded its reservation was voided at once: the money was withdrawable
-- again while the transfer sat on the connected account. A retry more than 24 hours later
-- (the processor forgets idempotency keys) made a second transfer under the same key.
--
-- Now:
--   * begin_withdrawal_step(withdrawal_id, step) (payment_service) records the request of a
--     withdrawal's transfer or payout, its attempt and key, in
--     private.withdrawal_processor_requests, before the processor is asked, and answers
--     whether that request was already sent (`resumed`): the function then looks for what
--     the processor made under it before asking again;
--   * a transfer request is unanswered while no transfer is recorded and no answer (a refusal,
--     or a finding that it was not made) is recorded under its key. While one is, the
--     withdrawal's reservation is kept when it fails or is canceled: settle_withdrawal no
--     longer voids it;
--   * the transfer of such a withdrawal, found at the processor afterwards, is recorded by
--     record_withdrawal_transfer (the one change a settled withdrawal still takes), which
--     opens its transfer_unreversed inconsistency: it is reversed like any other;
--   * record_withdrawal_transfer_not_made(withdrawal_id, idempotency_key) records that the
--     processor has no transfer for the request (asked more than a minute after it was sent,
--     longer than the function waits for the processor) and voids the reservation;
--   * withdrawals_with_unanswered_transfer() lists the withdrawals that ended while their
--     transfer request was unanswered, for the payouts function to settle.

/**
 * Each request of a withdrawal's transfer or payout, recorded before the processor is asked
 * (payment_service, through begin_withdrawal_step): its attempt and idempotency key, and its
 * id, which the request carries in its metadata (`request`) so that what the processor made
 * for it can be told apart from what someone else made. Never changed or deleted; no API role
 * reads it.
 */
create table private.withdrawal_processor_requests (
  id uuid primary key default gen_random_uuid(),
  withdrawal_id uuid not null references public.withdrawals (id),
  step text not null check (step in ('transfer', 'payout')),
  attempt integer not null check (attempt >= 1),
  idempotency_key text not null unique check (char_length(idempotency_key) <= 255),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (withdrawal_id, step, attempt)
);

create trigger keep_row_timestamps
before insert or update on private.withdrawal_processor_requests
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on private.withdrawal_processor_requests
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('private.withdrawal_processor_requests');

revoke all on table private.withdrawal_processor_requests from public;

/** A request sent to the processor is a record: never changed, never deleted. */
create function private.keep_withdrawal_processor_request() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'the request of attempt % of the % of withdrawal % was sent: it never changes',
  old.attempt, old.step, old.withdrawal_id
  using errcode = 'PT409';
end
$$;

revoke all on function private.keep_withdrawal_processor_request() from public;

create trigger keep_withdrawal_processor_request
before update or delete on private.withdrawal_processor_requests
for each row execute function private.keep_withdrawal_processor_request();

/**
 * The request of step `step` ('transfer' or 'payout') of withdrawal `withdrawal` that the
 * processor may have carried out without payguard knowing: sent, the step's object not
 * recorded on the withdrawal, and no answer (a refusal, or a finding that it was not made)
 * recorded under its key in withdrawal_processor_attempts. Null when there is none.
 */
create function private.unanswered_withdrawal_request(withdrawal uuid, step text)
returns private.withdrawal_processor_requests
language sql
stable
security definer
set search_path = ''
as $$
  select r.* from private.withdrawal_processor_requests as r
  inner join public.withdrawals as w on w.id = r.withdrawal_id
  where r.withdrawal_id = withdrawal and r.step = unanswered_withdrawal_request.step
    and case r.step
      when 'transfer' then w.processor_transfer_id is null
      else w.processor_payout_id is null
    end
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.idempotency_key = r.idempotency_key
    )
  order by r.attempt desc
  limit 1
$$;

/** Whether withdrawal `withdrawal` has a transfer request the processor may have carried out. */
create function private.withdrawal_transfer_unanswered(withdrawal uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select (private.unanswered_withdrawal_request(withdrawal, 'transfer')).id is not null
$$;

revoke all on function private.unanswered_withdrawal_request(uuid, text) from public;
revoke all on function private.withdrawal_transfer_unanswered(uuid) from public;
grant execute on function private.withdrawal_transfer_unanswered(uuid) to payment_service, admin;

/**
 * Record that payment_service is about to ask the processor for step `step` ('transfer' or
 * 'payout') of approved withdrawal `withdrawal_id`, before it asks: the step's current
 * attempt and key (those withdrawals_to_pay_out names). Answers {withdrawal_id, step, attempt,
 * idempotency_key, request_id, sent_at, resumed}: `resumed` is true when this request was
 * already recorded and never answered, so that the processor may have carried it out; the
 * caller then looks for it (a transfer in `transfer_group` `withdrawal:<id>`, a payout on the
 * connected account whose `metadata.request` is `request_id`) before asking again under the
 * same key. Refused (PT409): a withdrawal that is not approved, a transfer once one is
 * recorded, a payout before its transfer or after one is recorded, a payout method the
 * processor cannot pay yet. PT404 for an unknown withdrawal, PT422 for another step.
 */
create function public.begin_withdrawal_step(withdrawal_id uuid, step text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  at_attempt integer;
  key text;
  request private.withdrawal_processor_requests;
  resumed boolean := true;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = begin_withdrawal_step.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if step is null or step not in ('transfer', 'payout') then
    raise exception 'a withdrawal''s request is its transfer or its payout, not %',
    coalesce(step, 'nothing')
    using errcode = 'PT422';
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal.id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if step = 'transfer' and withdrawal.processor_transfer_id is not null then
    raise exception 'withdrawal % has transfer %: a transfer made is never sent again',
    withdrawal.id, withdrawal.processor_transfer_id
    using errcode = 'PT409';
  end if;
  if step = 'payout' and withdrawal.processor_transfer_id is null then
    raise exception 'withdrawal % has no transfer recorded: its payout comes after it',
    withdrawal.id
    using errcode = 'PT409';
  end if;
  if step = 'payout' and withdrawal.processor_payout_id is not null then
    raise exception 'withdrawal % was paid out by %', withdrawal.id, withdrawal.processor_payout_id
    using errcode = 'PT409';
  end if;
  if not private.payout_method_payable(withdrawal.payout_method_id) then
    raise exception 'withdrawal %: the processor cannot pay out to its payout method yet',
    withdrawal.id
    using errcode = 'PT409', hint = 'wait for the account to be verified';
  end if;
  at_attempt := private.withdrawal_step_attempt(withdrawal.id, step);
  key := private.withdrawal_step_key(withdrawal.id, step, at_attempt);
  select * into request from private.withdrawal_processor_requests as r
  where r.idempotency_key = key;
  if not found then
    resumed := false;
    insert into private.withdrawal_processor_requests (withdrawal_id, step, attempt, idempotency_key)
    values (withdrawal.id, step, at_attempt, key)
    returning * into request;
  end if;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'step', step,
    'attempt', at_attempt,
    'idempotency_key', key,
    'request_id', request.id,
    'sent_at', request.created_at,
    'resumed', resumed
  );
end
$$;

revoke all on function public.begin_withdrawal_step(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.begin_withdrawal_step(uuid, text) to payment_service;

/**
 * AFTER UPDATE trigger on withdrawals: settle the reservation when the withdrawal ends, as in
 * 20261205050200_reservation_kept_until_transfer_reversed.sql, except that a withdrawal that
 * fails or is canceled while its transfer request is unanswered keeps its reservation: the
 * transfer may exist at the processor. It is voided once the processor is found to have no
 * transfer for it (record_withdrawal_transfer_not_made, or a refusal recorded), or kept until
 * the reversal of the transfer found (record_withdrawal_transfer).
 */
create or replace function private.settle_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.status = 'paid' then
    perform private.ledger_resolve(private.withdrawal_reservation(new.id), true);
  elsif new.status in ('failed', 'canceled') and new.processor_transfer_id is null
    and not private.withdrawal_transfer_unanswered(new.id) then
    perform private.ledger_resolve(private.withdrawal_reservation(new.id), false);
  end if;
  return null;
end
$$;

/**
 * Void the reservation of withdrawal `withdrawal`, ended (failed or canceled) with no transfer
 * recorded, once its last transfer request is answered: the processor made no transfer for it.
 * Does nothing while a request is unanswered or for a withdrawal that has not ended.
 */
create function private.void_untransferred_withdrawal_reservation(withdrawal uuid) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (
    select from public.withdrawals as w
    where w.id = withdrawal and w.status in ('failed', 'canceled')
      and w.processor_transfer_id is null
  ) and not private.withdrawal_transfer_unanswered(withdrawal) then
    perform private.ledger_resolve(private.withdrawal_reservation(withdrawal), false);
  end if;
end
$$;

revoke all on function private.void_untransferred_withdrawal_reservation(uuid) from public;
grant execute on function private.void_untransferred_withdrawal_reservation(uuid)
to payment_service;

/**
 * BEFORE UPDATE trigger on withdrawals: a withdrawal's transfer id is recorded once, while it
 * is approved, as in 20261205020500_withdrawal_payouts.sql; or, once, after it failed or was
 * canceled while its transfer request was unanswered (the transfer found at the processor).
 */
create or replace function private.keep_withdrawal_transfer() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.processor_transfer_id is distinct from old.processor_transfer_id and (
    old.processor_transfer_id is not null
    or not (
      (old.status = 'approved' and new.status = 'approved')
      or (
        old.status in ('failed', 'canceled') and new.status = old.status
        and private.withdrawal_transfer_unanswered(old.id)
      )
    )
  ) then
    raise exception 'withdrawal %: the processor''s transfer id is recorded once, while it is '
    'approved', old.id
    using errcode = 'PT409';
  end if;
  return new;
end
$$;

/**
 * BEFORE UPDATE trigger on withdrawals: the transitions, who makes them, and the facts each
 * one records, as in 20261204234200_written_reasons_are_words.sql, except that a settled
 * withdrawal takes one change: payment_service recording the transfer of a withdrawal that
 * failed or was canceled while its transfer request was unanswered (keep_withdrawal_transfer
 * checks that it was), and nothing else with it.
 *
 *   requested  -> approved    postgres, once two distinct admins approved
 *   approved   -> processing  payment_service (may record the payout id)
 *   processing -> paid        payment_service, with the payout id
 *   processing -> failed      payment_service (may record a failure reason)
 *   requested, approved -> canceled   admin, with a written reason (failure_reason)
 */
create or replace function private.check_withdrawal_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  mover text;
  legal boolean;
begin
  -- Who: the role that may move a withdrawal into the new status at all.
  if new.status is distinct from old.status then
    mover := case new.status
      when 'approved' then 'postgres'
      when 'processing' then 'payment_service'
      when 'paid' then 'payment_service'
      when 'failed' then 'payment_service'
      when 'canceled' then 'admin'
    end;
    if mover is distinct from current_user::text then
      raise exception 'withdrawal % cannot be moved from % to % by %',
      old.id, old.status, new.status, current_user
      using errcode = 'PT403',
      hint = case
        when new.status = 'approved' then 'two distinct admins approve it, in withdrawal_approvals'
        else ''
      end;
    end if;
  end if;
  if (new.id, new.user_id, new.payout_method_id, new.amount_minor, new.currency)
    is distinct from (old.id, old.user_id, old.payout_method_id, old.amount_minor, old.currency)
  then
    raise exception 'withdrawal %: its owner, payout method, amount and currency never change',
    old.id
    using errcode = 'PT409';
  end if;
  -- Whether: a legal move from the old status; a settled withdrawal never changes, but for the
  -- transfer found after it ended.
  if new.status = old.status then
    if old.status in ('paid', 'failed', 'canceled') and not (
      old.status in ('failed', 'canceled') and current_user::text = 'payment_service'
      and old.processor_transfer_id is null and new.processor_transfer_id is not null
      and (to_jsonb(new) - 'processor_transfer_id' - 'updated_at')
      = (to_jsonb(old) - 'processor_transfer_id' - 'updated_at')
    ) then
      raise exception 'withdrawal % is %: a settled withdrawal never changes', old.id, old.status
      using errcode = 'PT409',
      hint = 'a retry of the same call with the same idempotency key replays its answer';
    end if;
  else
    legal := (old.status::text || '>' || new.status::text) in (
      'requested>approved', 'approved>processing', 'processing>paid', 'processing>failed',
      'requested>canceled', 'approved>canceled'
    );
    if not legal then
      raise exception 'withdrawal % cannot go from % to %', old.id, old.status, new.status
      using errcode = 'PT409';
    end if;
    if new.status = 'approved' and (
      select count(distinct a.approved_by) from public.withdrawal_approvals as a
      where a.withdrawal_id = old.id
    ) < 2 then
      raise exception 'withdrawal % needs two distinct admins'' approval', old.id
      using errcode = 'PT403';
    end if;
  end if;
  -- What: each fact is recorded once, by the move that records it.
  if new.processor_payout_id is distinct from old.processor_payout_id and (
    old.processor_payout_id is not null or new.status = old.status
    or new.status not in ('processing', 'paid')
  ) then
    raise exception 'withdrawal %: the processor''s payout id is set once, when the payout is '
    'sent or paid', old.id
    using errcode = 'PT409';
  end if;
  if new.failure_reason is distinct from old.failure_reason and (
    new.status = old.status or new.status not in ('failed', 'canceled')
  ) then
    raise exception 'withdrawal %: the failure reason is recorded once, when it fails or is '
    'canceled', old.id
    using errcode = 'PT409';
  end if;
  if new.processed_at is distinct from old.processed_at then
    raise exception 'withdrawal %: the time it was processed is the database''s to record',
    old.id
    using errcode = 'PT409';
  end if;
  if new.status = 'canceled' and new.status is distinct from old.status
    and not private.is_written(new.failure_reason, 500) then
    raise exception 'canceling withdrawal % needs a written reason of 10 to 500 characters', old.id
    using errcode = 'PT422',
    hint = 'say why, in words, in failure_reason (white space, invisible characters and '
    || 'punctuation alone do not count): it is kept with the withdrawal and in the audit trail';
  end if;
  if new.status = 'paid' and new.processor_payout_id is null then
    raise exception 'withdrawal % needs the processor''s payout id to be paid', old.id
    using errcode = 'PT422';
  end if;
  if new.status is distinct from old.status and new.status in ('paid', 'failed', 'canceled') then
    new.processed_at := now();
  end if;
  return new;
end
$$;

-- A transfer recorded after its withdrawal ended is to be reversed, as one recorded before.
create trigger withdrawal_found_transfer_to_reverse
after update of processor_transfer_id on public.withdrawals
for each row
when (
  old.processor_transfer_id is null and new.processor_transfer_id is not null
  and new.status in ('failed', 'canceled')
)
execute function private.withdrawal_transfer_to_reverse();

/**
 * Resolve the open `kind` inconsistency (transfer_unrecorded, payout_unrecorded) about
 * `object_id`, reported when the database refused to record it, now that withdrawal
 * `withdrawal` records it. Security definer: payment_service resolves no inconsistency itself.
 */
create function private.resolve_unrecorded_withdrawal_object(
  kind text, object_id text, withdrawal uuid
) returns void
language sql
security definer
set search_path = ''
as $$
  update public.processor_inconsistencies as i
  set resolution = 'Recorded: ' || object_id || ' is recorded for withdrawal ' || withdrawal
  where i.kind = resolve_unrecorded_withdrawal_object.kind
    and i.kind in ('transfer_unrecorded', 'payout_unrecorded')
    and i.processor_object_id = object_id and i.resolution is null
$$;

revoke all on function private.resolve_unrecorded_withdrawal_object(text, text, uuid) from public;
grant execute on function private.resolve_unrecorded_withdrawal_object(text, text, uuid)
to payment_service;

/**
 * Record the processor's transfer `transfer_id` for withdrawal `withdrawal_id`
 * (payment_service), as in 20261205020500_withdrawal_payouts.sql: set once, while the
 * withdrawal is approved (and its payout method payable). Also for a withdrawal that failed or
 * was canceled while its transfer request was unanswered: the transfer found at the processor
 * is recorded, which opens its transfer_unreversed inconsistency, and it is reversed like any
 * other (its reservation kept until then). PT422 for an id that is not tr_…. A
 * transfer_unrecorded inconsistency about the transfer (reported when an earlier call could
 * not record it) is resolved with it.
 */
create or replace function public.record_withdrawal_transfer(withdrawal_id uuid, transfer_id text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.processor_transfer_id = transfer_id then
    return to_jsonb(withdrawal);
  end if;
  if coalesce(transfer_id, '') !~ '^tr_[A-Za-z0-9]+$' then
    raise exception 'a transfer''s id is tr_…, not %', coalesce(transfer_id, 'nothing')
    using errcode = 'PT422';
  end if;
  if withdrawal.status in ('failed', 'canceled') and withdrawal.processor_transfer_id is null
    and private.withdrawal_transfer_unanswered(withdrawal.id) then
    -- Asked for before the withdrawal ended, the transfer was made: recorded, it is reversed.
    update public.withdrawals as w
    set processor_transfer_id = record_withdrawal_transfer.transfer_id
    where w.id = record_withdrawal_transfer.withdrawal_id
    returning * into withdrawal;
    perform private.resolve_unrecorded_withdrawal_object(
      'transfer_unrecorded', transfer_id, withdrawal.id
    );
    return to_jsonb(withdrawal);
  end if;
  if withdrawal.status <> 'approved' then
    raise exception 'withdrawal % is %: only an approved withdrawal is paid out',
    withdrawal_id, withdrawal.status
    using errcode = 'PT409';
  end if;
  if not private.payout_method_payable(withdrawal.payout_method_id) then
    raise exception 'withdrawal %: the processor cannot pay out to its payout method yet',
    withdrawal_id
    using errcode = 'PT409', hint = 'wait for the account to be verified';
  end if;
  update public.withdrawals as w
  set processor_transfer_id = record_withdrawal_transfer.transfer_id
  where w.id = record_withdrawal_transfer.withdrawal_id
  returning * into withdrawal;
  perform private.resolve_unrecorded_withdrawal_object(
    'transfer_unrecorded', transfer_id, withdrawal.id
  );
  return to_jsonb(withdrawal);
end
$$;

/**
 * Record that the processor refused step `step` of withdrawal `withdrawal_id`, as in
 * 20261205030200_withdrawal_processor_attempts.sql; a transfer's refusal is also recorded for
 * a withdrawal that ended while that transfer request was unanswered (its key the request's),
 * which voids the reservation: no transfer was made.
 */
create or replace function public.record_withdrawal_processor_failure(
  withdrawal_id uuid, step text, idempotency_key text, code text, message text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
  ended_unanswered boolean;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_processor_failure.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if step is null or step not in ('transfer', 'payout', 'reversal') then
    raise exception 'a withdrawal''s step is its transfer, its payout or its reversal, not %',
    coalesce(step, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into recorded from public.withdrawal_processor_attempts as a
  where a.idempotency_key = record_withdrawal_processor_failure.idempotency_key;
  if found then
    if (recorded.withdrawal_id, recorded.step, recorded.status)
      is distinct from (withdrawal.id, step, 'failed') then
      raise exception 'idempotency key % is not a refused % of withdrawal %',
      idempotency_key, step, withdrawal.id
      using errcode = 'PT409';
    end if;
  else
    ended_unanswered := step = 'transfer' and withdrawal.status in ('failed', 'canceled')
      and withdrawal.processor_transfer_id is null
      and private.withdrawal_transfer_unanswered(withdrawal.id);
    if step = 'transfer' and not ended_unanswered and (
      withdrawal.status <> 'approved' or withdrawal.processor_transfer_id is not null
    ) then
      raise exception 'withdrawal % is % with transfer %: its transfer is not being sent',
      withdrawal.id, withdrawal.status, coalesce(withdrawal.processor_transfer_id, 'none')
      using errcode = 'PT409';
    end if;
    if step = 'payout' and (
      withdrawal.status <> 'approved' or withdrawal.processor_transfer_id is null
      or withdrawal.processor_payout_id is not null
    ) then
      raise exception 'withdrawal % is %: its payout is not being sent', withdrawal.id,
      withdrawal.status
      using errcode = 'PT409';
    end if;
    if step = 'reversal' and (
      withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is null
      or exists (
        select from public.withdrawal_processor_attempts as a
        where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded'
      )
    ) then
      raise exception 'withdrawal % is %: its transfer is not being reversed', withdrawal.id,
      withdrawal.status
      using errcode = 'PT409';
    end if;
    at_attempt := private.withdrawal_step_attempt(withdrawal.id, step);
    if idempotency_key is distinct from private.withdrawal_step_key(withdrawal.id, step, at_attempt)
      then
      raise exception 'the % of withdrawal % is at attempt %, not under key %',
      step, withdrawal.id, at_attempt, coalesce(idempotency_key, 'none')
      using errcode = 'PT409', hint = 'list the withdrawal again for its current key';
    end if;
    insert into public.withdrawal_processor_attempts as a (
      withdrawal_id, step, attempt, idempotency_key, status, failure_code, failure_message
    )
    values (
      withdrawal.id, step, at_attempt, idempotency_key, 'failed',
      coalesce(
        left(nullif(regexp_replace(lower(coalesce(code, '')), '[^a-z0-9_]', '_', 'g'), ''), 100),
        'processor_error'
      ),
      left(message, 500)
    )
    returning * into recorded;
    if ended_unanswered then
      perform private.void_untransferred_withdrawal_reservation(withdrawal.id);
    end if;
  end if;
  return jsonb_build_object(
    'withdrawal_id', recorded.withdrawal_id,
    'step', recorded.step,
    'attempt', recorded.attempt,
    'failure_code', recorded.failure_code,
    'next_idempotency_key',
    private.withdrawal_step_key(recorded.withdrawal_id, recorded.step, recorded.attempt + 1)
  );
end
$$;

/**
 * Record that the processor has no transfer for the unanswered transfer request `idempotency_key`
 * of withdrawal `withdrawal_id`, which failed or was canceled while it was unanswered
 * (payment_service, after looking for it in the transfer group `withdrawal:<id>`): the request
 * is answered `not_made` and the withdrawal's reservation voided, the money back in the wallet.
 * Only a request sent more than a minute ago (PT409: the function waits 20 s for the
 * processor, so no request under that key can still be in flight after a minute; an ended
 * withdrawal's key is never sent again). PT409 also for a withdrawal that has not ended, one
 * with a transfer recorded, and another key than the unanswered request's; PT404 for an
 * unknown withdrawal. Returns {withdrawal_id, idempotency_key, failure_code}. Security definer:
 * the requests are no API role's to read.
 */
create function public.record_withdrawal_transfer_not_made(
  withdrawal_id uuid, idempotency_key text
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  request private.withdrawal_processor_requests;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer_not_made.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is not null
  then
    raise exception 'withdrawal % is % with transfer %: only a withdrawal that ended with its '
    'transfer request unanswered is settled this way', withdrawal.id, withdrawal.status,
    coalesce(withdrawal.processor_transfer_id, 'none')
    using errcode = 'PT409';
  end if;
  request := private.unanswered_withdrawal_request(withdrawal.id, 'transfer');
  if request.id is null or request.idempotency_key is distinct from idempotency_key then
    raise exception 'withdrawal % has no unanswered transfer request under key %', withdrawal.id,
    coalesce(idempotency_key, 'none')
    using errcode = 'PT409';
  end if;
  if request.created_at > now() - interval '1 minute' then
    raise exception 'the transfer request % of withdrawal % was sent at %: it may still be in '
    'flight', idempotency_key, withdrawal.id, request.created_at
    using errcode = 'PT409', hint = 'look for it again a minute after it was sent';
  end if;
  insert into public.withdrawal_processor_attempts as a (
    withdrawal_id, step, attempt, idempotency_key, status, failure_code, failure_message
  )
  values (
    withdrawal.id, 'transfer', request.attempt, request.idempotency_key, 'failed', 'not_made',
    'The processor has no transfer in group withdrawal:' || withdrawal.id
    || ': the request was not carried out'
  );
  perform private.void_untransferred_withdrawal_reservation(withdrawal.id);
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'idempotency_key', request.idempotency_key,
    'failure_code', 'not_made'
  );
end
$$;

revoke all on function public.record_withdrawal_transfer_not_made(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_withdrawal_transfer_not_made(uuid, text)
to payment_service;

/**
 * The withdrawals that failed or were canceled while their transfer request was unanswered
 * (payment_service): the transfer may exist at the processor, and the reservation is kept
 * until the payouts function finds it (record_withdrawal_transfer, then its reversal) or finds
 * that it was not made (record_withdrawal_transfer_not_made).
 */
create function public.withdrawals_with_unanswered_transfer()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  processor_account_id text,
  idempotency_key text,
  request_id uuid,
  sent_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, pm.processor_account_id,
    r.idempotency_key, r.id, r.created_at
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  cross join lateral private.unanswered_withdrawal_request(w.id, 'transfer') as r
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is null
    and r.id is not null
  order by w.updated_at, w.id
$$;

revoke all on function public.withdrawals_with_unanswered_transfer()
from public, anon, authenticated, service_role;
grant execute on function public.withdrawals_with_unanswered_transfer() to payment_service;
