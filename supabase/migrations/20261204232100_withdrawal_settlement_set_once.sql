-- A withdrawal's processing facts are set once, by the transition that records them.
--
-- complete_withdrawal could run twice with two payout ids and answer 200 both times: the
-- second overwrote the processor's payout id of a withdrawal already paid, and processed_at
-- was writable too. Now, for every role and path (the RPCs, a PATCH, the tables' owner):
--   * a settled withdrawal (paid, failed, canceled) never changes and is never deleted
--     (PT409); a second complete, a fail after a complete, a complete after a fail are
--     refused, while a retry with the same idempotency key still replays the first answer;
--   * the processor's payout id is set once, on the move to processing or paid, and never
--     changes after; the failure reason only on the move to failed or canceled;
--   * processed_at is the database's: now() on the move to paid, failed or canceled, and no
--     client writes it (payment_service loses its column grant in the policy migration);
--   * who may move a withdrawal is checked before whether the move is legal, so the answer to
--     a role that may never make a move does not depend on the withdrawal's state.

/**
 * BEFORE UPDATE trigger on withdrawals: the transitions, who makes them, and the facts each
 * one records. Security invoker: current_user is the role that moves the withdrawal
 * (postgres for the second approval, which approve_withdrawal_when_two makes).
 *
 *   requested  -> approved    postgres, once two distinct admins approved
 *   approved   -> processing  payment_service (may record the payout id)
 *   processing -> paid        payment_service, with the payout id
 *   processing -> failed      payment_service (may record a failure reason)
 *   requested, approved -> canceled   admin (may record a reason)
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
  -- Whether: a legal move from the old status; a settled withdrawal never changes.
  if new.status = old.status then
    if old.status in ('paid', 'failed', 'canceled') then
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

/**
 * BEFORE DELETE trigger on withdrawals: a settled withdrawal is a financial record, and is
 * never deleted, by any role (no API role may delete withdrawals at all; this holds the
 * tables' owner too).
 */
create function private.keep_settled_withdrawals() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.status in ('paid', 'failed', 'canceled') then
    raise exception 'withdrawal % is %: a settled withdrawal is never deleted', old.id, old.status
    using errcode = 'PT409';
  end if;
  return old;
end
$$;

revoke all on function private.keep_settled_withdrawals() from public;

create trigger keep_settled_withdrawals
before delete on public.withdrawals
for each row execute function private.keep_settled_withdrawals();
