-- A payout the processor refused is retried under a new idempotency key.
--
-- The processor keeps its first answer to an idempotency key for 24 hours, a refusal
-- included, and replays it to every request under that key. withdrawals_to_pay_out handed
-- out one fixed key per step (withdrawal:<id>:transfer, withdrawal:<id>:payout), so a payout
-- refused because the connected account could not yet receive one (payouts_not_allowed) was
-- refused again on every retry for a day, even after the account was verified.
--
-- Now the processor's refusals are recorded, each once, in withdrawal_processor_attempts
-- (the step, its attempt number, the key it was sent under, the processor's error code and
-- message): record_withdrawal_processor_failure, as payment_service, for an answer the
-- processor gave (never for a request that got no answer, a network error or a 5xx: a
-- retry of that one must keep its key, so that the processor runs it at most once). The next
-- attempt of that step gets the next key: attempt 1 keeps the key it always had, attempt n
-- is `withdrawal:<id>:payout:<n>` (or `…:transfer:<n>`). A refusal is recorded only for the
-- step the withdrawal is at, under its current key, and never for a transfer once one is
-- recorded: a transfer made is never sent again, so nothing is paid twice.

/**
 * The processor's answers to a withdrawal's steps that the withdrawal itself does not record:
 * a refusal of its transfer, its payout or the reversal of its transfer (status failed, with
 * the processor's error code), and a reversal made (status succeeded, with its `trr_…`).
 * Appended by payment_service, never changed or deleted.
 */
create table public.withdrawal_processor_attempts (
  id uuid primary key default gen_random_uuid(),
  withdrawal_id uuid not null references public.withdrawals (id),
  step text not null check (step in ('transfer', 'payout', 'reversal')),
  attempt integer not null check (attempt >= 1),
  idempotency_key text not null unique check (char_length(idempotency_key) <= 255),
  status text not null check (status in ('failed', 'succeeded')),
  processor_object_id text unique check (processor_object_id ~ '^[a-z]+_[A-Za-z0-9]+$'),
  failure_code text check (failure_code ~ '^[a-z0-9_]{1,100}$'),
  failure_message text check (char_length(failure_message) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (withdrawal_id, step, attempt),
  check ((status = 'failed') = (failure_code is not null)),
  check ((status = 'succeeded') = (processor_object_id is not null))
);

create trigger keep_row_timestamps
before insert or update on public.withdrawal_processor_attempts
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.withdrawal_processor_attempts
for each row execute function private.refuse_card_data();
select private.renew_card_data_guard('public.withdrawal_processor_attempts');

create trigger audit_trail
after insert or update or delete on public.withdrawal_processor_attempts
for each row execute function private.capture_audit_row('id');
select private.renew_audit_trail('public.withdrawal_processor_attempts');

create trigger refuse_unaudited_truncate
before truncate on public.withdrawal_processor_attempts
for each statement execute function private.refuse_unaudited_truncate();

/** A processor's answer is a record: never changed, never deleted. */
create function private.keep_withdrawal_processor_attempt() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  raise exception 'attempt % of the % of withdrawal % is a record of the processor''s answer: '
  'it never changes', old.attempt, old.step, old.withdrawal_id
  using errcode = 'PT409';
end
$$;

revoke all on function private.keep_withdrawal_processor_attempt() from public;

create trigger keep_withdrawal_processor_attempt
before update or delete on public.withdrawal_processor_attempts
for each row execute function private.keep_withdrawal_processor_attempt();

/**
 * The idempotency key of attempt `attempt` of step `step` ('transfer', 'payout',
 * 'reversal') of withdrawal `withdrawal`: `withdrawal:<id>:<step>` for the first, then
 * `withdrawal:<id>:<step>:<n>`.
 */
create function private.withdrawal_step_key(withdrawal uuid, step text, attempt integer)
returns text
language sql
immutable
set search_path = ''
as $$
  select 'withdrawal:' || withdrawal || ':' || step
    || case when attempt > 1 then ':' || attempt else '' end
$$;

/** The attempt that step `step` of withdrawal `withdrawal` is at: one more than its refusals. */
create function private.withdrawal_step_attempt(withdrawal uuid, step text) returns integer
language sql
stable
set search_path = ''
as $$
  select 1 + count(*)::integer from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal and a.step = withdrawal_step_attempt.step
    and a.status = 'failed'
$$;

revoke all on function private.withdrawal_step_key(uuid, text, integer) from public;
revoke all on function private.withdrawal_step_attempt(uuid, text) from public;
grant execute on function private.withdrawal_step_key(uuid, text, integer) to payment_service;
grant execute on function private.withdrawal_step_attempt(uuid, text) to payment_service;

drop function public.withdrawals_to_pay_out();

/**
 * The approved withdrawals not yet paid out, with what a payout needs, as in
 * 20261205020500_withdrawal_payouts.sql (payment_service): the keys to send are those of the
 * attempt each step is at (a step the processor refused gets the next key), and the
 * attempts' numbers; the last refusal's code, if any.
 */
create function public.withdrawals_to_pay_out()
returns table (
  withdrawal_id uuid,
  user_id uuid,
  amount_minor bigint,
  currency char(3),
  processor_account_id text,
  processor_external_account_id text,
  processor_transfer_id text,
  transfer_idempotency_key text,
  payout_idempotency_key text,
  transfer_attempt integer,
  payout_attempt integer,
  last_failure_code text
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.user_id, w.amount_minor, w.currency, pm.processor_account_id,
    pm.processor_external_account_id, w.processor_transfer_id,
    private.withdrawal_step_key(w.id, 'transfer', t.attempt),
    private.withdrawal_step_key(w.id, 'payout', p.attempt),
    t.attempt, p.attempt,
    (
      select a.failure_code from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.status = 'failed'
      order by a.created_at desc, a.attempt desc
      limit 1
    )
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'transfer') as attempt
  ) as t
  cross join lateral (select private.withdrawal_step_attempt(w.id, 'payout') as attempt) as p
  where w.status = 'approved' and w.processor_payout_id is null
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
$$;

revoke all on function public.withdrawals_to_pay_out()
from public, anon, authenticated, service_role;
grant execute on function public.withdrawals_to_pay_out() to payment_service;

/**
 * Record that the processor refused step `step` ('transfer', 'payout' or 'reversal') of
 * withdrawal `withdrawal_id`, sent under `idempotency_key`, with its error `code` and
 * `message` (payment_service). Only for an answer the processor gave: a request that got no
 * answer is retried under the same key. The key must be the one the step is at now (PT409
 * otherwise: another call moved on); the same refusal again changes nothing. Refused (PT409):
 * a transfer once one is recorded (it is never sent again), a payout before the transfer or
 * after one is recorded, a step of a withdrawal no longer at it. Returns {withdrawal_id,
 * step, attempt, failure_code, next_idempotency_key}.
 */
create function public.record_withdrawal_processor_failure(
  withdrawal_id uuid, step text, idempotency_key text, code text, message text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
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
    if step = 'transfer' and (
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

revoke all on function public.record_withdrawal_processor_failure(uuid, text, text, text, text)
from public, anon, authenticated, service_role;
grant execute on function public.record_withdrawal_processor_failure(
  uuid, text, text, text, text
) to payment_service;
