-- An admin's approval of a withdrawal carries a written reason.
--
-- Dual control recorded who approved a large withdrawal and when, never why. Each approval
-- now carries a reason of 10 to 2000 characters once leading and trailing white space is
-- trimmed (PT422 otherwise), kept in the row and so in the audit row of its insert.
-- approve_withdrawal takes it as a new parameter, before the idempotency key (the old
-- signature is dropped); a direct insert names it (the policy migration after this one
-- grants admin the column). Approvals recorded before stay as they were recorded: the
-- column's check is NOT VALID, so it holds every approval from now on.
--
-- The checks of an approval run in the order who, whether, what: never the withdrawal's
-- owner (PT403), only a withdrawal that waits for approval (PT409), then the reason. And an
-- approval that was acted on (its withdrawal is no longer waiting) is a settled record: it
-- is never updated nor deleted, by any role.

/**
 * The text with its leading and trailing white space removed: what a written reason says.
 * Immutable, for the checks on the tables that keep one; the roles that write those tables
 * execute their checks, so they may call it.
 */
create function private.trimmed(value text) returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select regexp_replace(value, '^[[:space:]]+|[[:space:]]+$', '', 'g')
$$;

revoke all on function private.trimmed(text) from public;
grant execute on function private.trimmed(text) to authenticated, admin, escrow_service;

alter table public.withdrawal_approvals add column reason text;

comment on column public.withdrawal_approvals.reason is
'Why the admin approved the withdrawal, in their own words: 10 to 2000 characters.';

alter table public.withdrawal_approvals
add constraint withdrawal_approvals_reason_check
check (reason is not null and char_length(private.trimmed(reason)) between 10 and 2000) not valid;

/**
 * BEFORE INSERT trigger on withdrawal_approvals: who (never the withdrawal's owner), whether
 * (the withdrawal waits for approval) and what (a written reason), in that order. Security
 * definer, to lock the withdrawal whatever the approver may read.
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
  if new.reason is null or char_length(private.trimmed(new.reason)) not between 10 and 2000 then
    raise exception 'an approval of withdrawal % needs a written reason of 10 to 2000 characters',
    new.withdrawal_id
    using errcode = 'PT422',
    hint = 'say why the withdrawal may be paid out: the reason is kept with the approval and '
    || 'in the audit trail';
  end if;
  return new;
end
$$;

/**
 * BEFORE UPDATE OR DELETE trigger on withdrawal_approvals: once its withdrawal was acted on
 * (approved, processed or canceled), an approval is a settled record and never changes. No
 * API role may update or delete approvals at all; this holds the tables' owner too.
 */
create function private.keep_acted_on_approvals() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (
    select w.status from public.withdrawals as w where w.id = old.withdrawal_id
  ) is distinct from 'requested' then
    raise exception 'approval % of withdrawal % was acted on: it never changes',
    old.id, old.withdrawal_id
    using errcode = 'PT409';
  end if;
  if tg_op = 'DELETE' then
    return old;
  end if;
  return new;
end
$$;

revoke all on function private.keep_acted_on_approvals() from public;

create trigger keep_acted_on_approvals
before update or delete on public.withdrawal_approvals
for each row execute function private.keep_acted_on_approvals();

drop function public.approve_withdrawal(uuid, text);
drop function private.approve_withdrawal(uuid, text);

/**
 * An admin approves a withdrawal that waits for dual control, saying why. The same key with
 * the same parameters replays the first answer.
 */
create function private.approve_withdrawal(
  withdrawal_id uuid,
  reason text,
  idempotency_key text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  parameters jsonb := jsonb_build_object('withdrawal_id', withdrawal_id, 'reason', reason);
  answer jsonb := private.idempotency_replay('approve_withdrawal', idempotency_key, parameters);
begin
  if answer is not null then
    return answer;
  end if;
  insert into public.withdrawal_approvals (withdrawal_id, reason)
  values (approve_withdrawal.withdrawal_id, approve_withdrawal.reason)
  returning to_jsonb(withdrawal_approvals.*) into answer;
  return private.idempotency_store('approve_withdrawal', idempotency_key, parameters, answer);
end
$$;

revoke all on function private.approve_withdrawal(uuid, text, text) from public;
grant execute on function private.approve_withdrawal(uuid, text, text) to admin;

/**
 * private.approve_withdrawal, with a refusal recorded and answered as PostgREST would
 * (20261126080500_rpc_refused_calls.sql).
 */
create function public.approve_withdrawal(
  withdrawal_id uuid,
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
  return private.approve_withdrawal(withdrawal_id, reason, idempotency_key);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'approve_withdrawal', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id, 'reason', reason),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

grant execute on function public.approve_withdrawal(uuid, text, text) to admin;
