-- A written reason is words: white space, invisible characters and punctuation alone are not.
--
-- Closing a dispute and approving a withdrawal needed 10 characters "once trimmed" of white
-- space, and PostgreSQL's [[:space:]] does not know Unicode's: twelve zero-width spaces,
-- no-break spaces, byte-order marks, Hangul fillers, braille blanks, control characters,
-- soft hyphens or combining marks alone, or ten full stops, closed a dispute (and settled its
-- money) or approved a withdrawal. And an admin canceled a withdrawal (a settlement: its
-- reservation is voided) without any reason at all. Now:
--   * private.written_text(value) is what a text writes: its characters that show nothing
--     removed (controls, Unicode's format characters such as zero-width spaces, joiners,
--     direction marks and the byte-order mark, variation selectors, tags, combining marks
--     standing alone on nothing, invisible fillers), every run of white space (Unicode's
--     too) as one space, trimmed;
--   * private.is_written(value, max_chars) holds when that is at least 10 characters long
--     and holds a letter or a digit (a character that is not white space, punctuation or a
--     symbol), and the value is at most max_chars long once trimmed (the column's bound);
--   * a dispute's resolution (to close it), an approval's reason, and an admin's cancel of a
--     withdrawal (its failure_reason, up to the column's 500 characters) must be written,
--     with PT422 and the rule's message otherwise; the checks on the tables hold the first
--     two for every path, and replace the trimmed-length ones (NOT VALID: the rows already
--     recorded stay as they were).

/**
 * What `value` writes: its characters that show nothing removed (controls, format
 * characters, variation selectors, tags, combining marks, invisible fillers), each run of
 * white space (Unicode's spaces included) as one space, trimmed.
 */
create function private.written_text(value text) returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select btrim(regexp_replace(
    regexp_replace(
      regexp_replace(
        value,
        '[[:space:]\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]', ' ', 'g'
      ),
      '[\u0001-\u001F\u007F-\u009F\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u115F\u1160'
      || '\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F'
      || '\uFEFF\uFFA0\uFFF9-\uFFFB\U000E0000-\U000E0FFF\u0300-\u036F\u1AB0-\u1AFF'
      || '\u1DC0-\u1DFF\u20D0-\u20FF\uFE20-\uFE2F]',
      '', 'g'
    ),
    ' {2,}', ' ', 'g'
  ), ' ')
$$;

/**
 * Whether `value` is a written reason: at least 10 characters of writing
 * (private.written_text) with a letter or a digit among them, and at most `max_chars` long
 * once trimmed.
 */
create function private.is_written(value text, max_chars integer) returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(
    char_length(private.trimmed(value)) <= max_chars
    and char_length(private.written_text(value)) >= 10
    and private.written_text(value) ~ (
      '[^ !-/:-@[-`{-~\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF'
      || '\u2190-\u2BFF\u3001-\u3003\u3008-\u3020\u3030\u30FB\uFE10-\uFE1F\uFE30-\uFE6F'
      || '\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65\U0001F000-\U0001FAFF]'
    ),
    false
  )
$$;

revoke all on function private.written_text(text) from public;
revoke all on function private.is_written(text, integer) from public;
grant execute on function private.written_text(text), private.is_written(text, integer)
to authenticated, admin, escrow_service, payment_service, service_role;

alter table public.disputes drop constraint disputes_closed_with_resolution_check;

alter table public.disputes
add constraint disputes_closed_with_resolution_check
check (status = 'open' or private.is_written(resolution, 5000)) not valid;

alter table public.withdrawal_approvals drop constraint withdrawal_approvals_reason_check;

alter table public.withdrawal_approvals
add constraint withdrawal_approvals_reason_check
check (private.is_written(reason, 2000)) not valid;

/**
 * BEFORE INSERT OR UPDATE trigger on disputes, as in 20261204232400_dispute_settlement.sql:
 * who, whether, what; closing one needs a resolution that private.is_written accepts.
 */
create or replace function private.record_dispute_resolution() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.status := 'open';
    new.outcome := null;
    new.payee_share_minor := null;
    new.resolution := null;
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if (select auth.uid()) in (
    select unnest(array[mp.payer_id, mp.payee_id]) from public.milestone_payments as mp
    where mp.id = old.milestone_payment_id
  ) then
    raise exception 'a party to milestone payment % cannot resolve its dispute',
    old.milestone_payment_id
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if (new.id, new.milestone_payment_id, new.opened_by, new.reason)
    is distinct from (old.id, old.milestone_payment_id, old.opened_by, old.reason) then
    raise exception 'dispute %: its id, its payment, who opened it and why never change', old.id
    using errcode = 'PT409';
  end if;
  if old.status <> 'open' then
    raise exception 'dispute % is %: a closed dispute never changes', old.id, old.status
    using errcode = 'PT409',
    hint = 'its decision stands: a correction of the money is a correcting ledger transfer';
  end if;
  if new.status <> 'resolved' and new.payee_share_minor is not null then
    raise exception 'dispute %: the payee''s share is recorded only by resolving it as a split',
    old.id
    using errcode = 'PT422';
  end if;
  if new.status = 'open' then
    new.resolved_by := null;
    new.resolved_at := null;
    return new;
  end if;
  if not private.is_written(new.resolution, 5000) then
    raise exception 'closing dispute % needs a written resolution of 10 to 5000 characters',
    old.id
    using errcode = 'PT422',
    hint = 'say why, in words (white space, invisible characters and punctuation alone do not '
    || 'count): the resolution is kept with the decision and in the audit trail (to settle '
    || 'its payment directly, write it on the dispute first)';
  end if;
  new.resolved_by := (select auth.uid());
  new.resolved_at := now();
  return new;
end
$$;

/**
 * BEFORE INSERT trigger on withdrawal_approvals, as in
 * 20261204232200_withdrawal_approval_reason.sql: who, whether, then a reason that
 * private.is_written accepts.
 */
create or replace function private.check_withdrawal_approval() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  -- Locked, so that concurrent approvals count each other (approve_withdrawal_when_two).
  select * into withdrawal from public.withdrawals as w where w.id = new.withdrawal_id
  for update;
  if withdrawal.user_id = new.approved_by then
    raise exception 'no one approves their own withdrawal' using errcode = 'PT403';
  end if;
  if withdrawal.id is null or withdrawal.status <> 'requested' then
    raise exception 'withdrawal % is not waiting for approval', new.withdrawal_id
    using errcode = 'PT409';
  end if;
  if not private.is_written(new.reason, 2000) then
    raise exception 'an approval of withdrawal % needs a written reason of 10 to 2000 characters',
    new.withdrawal_id
    using errcode = 'PT422',
    hint = 'say why the withdrawal may be paid out, in words (white space, invisible characters '
    || 'and punctuation alone do not count): the reason is kept with the approval and in the '
    || 'audit trail';
  end if;
  return new;
end
$$;

/**
 * BEFORE UPDATE trigger on withdrawals: the transitions, who makes them, and the facts each
 * one records, as in 20261204232100_withdrawal_settlement_set_once.sql; an admin's cancel
 * carries a written reason in failure_reason. Security invoker: current_user is the role
 * that moves the withdrawal.
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
