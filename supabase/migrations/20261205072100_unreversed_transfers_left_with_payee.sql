-- A transfer that cannot be reversed can be left with the payee, by an admin, in writing.
--
-- A withdrawal that fails or is canceled after its transfer keeps its money reserved until
-- the transfer's reversal is recorded (20261205050200). When the reversal cannot be made (the
-- connected account's balance was paid out by other means, the account is closed), nothing
-- could ever end that: the reservation stayed pending for ever, the `transfer_unreversed`
-- inconsistency stayed open, and the payouts function tried the reversal on every run. An
-- admin resolving the inconsistency in writing closed the report but left the money reserved
-- and the reversal retried, so the books said one thing and the inconsistency another.
--
-- Now:
--   * public.leave_transfer_with_payee(withdrawal_id, resolution) (an admin, aal2, written)
--     records the decision that the transfer stays with the payee: the money left the
--     platform with it, so the withdrawal's reservation is posted (as a paid withdrawal's
--     is), and the transfer_unreversed inconsistency is resolved with the admin's words,
--     in one transaction;
--   * that resolved inconsistency, with no reversal recorded, is the record of the decision:
--     withdrawals_to_reverse() no longer lists the withdrawal, and
--     record_withdrawal_transfer_reversal refuses a reversal recorded after it (PT409): the
--     money it would return was counted as paid out (`payguard reconcile --stripe` reports a
--     transfer Stripe reversed after it was left with the payee);
--   * resolve_processor_inconsistency refuses a transfer_unreversed inconsistency (PT409):
--     it is settled by the reversal, or by leaving the transfer with the payee, never by
--     words alone.

/** True when the transfer of withdrawal `withdrawal` was left with the payee by an admin. */
create function private.transfer_left_with_payee(withdrawal uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.withdrawals as w
    inner join public.processor_inconsistencies as i
      on i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
    where w.id = withdrawal and i.resolution is not null
      and not exists (
        select from public.withdrawal_processor_attempts as a
        where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
      )
  )
$$;

revoke all on function private.transfer_left_with_payee(uuid) from public;
grant execute on function private.transfer_left_with_payee(uuid) to payment_service, admin;

/**
 * Leave the transfer of withdrawal `withdrawal_id`, failed or canceled after its transfer was
 * made and not reversed, with the payee (an admin at aal2, with a written resolution of 10 to
 * 1,900 characters: PT403, PT422): the withdrawal's reservation is posted (its money left the
 * platform with the transfer) and the transfer_unreversed inconsistency is resolved as
 * "Left with the payee: <resolution>". PT404 for an unknown withdrawal; PT409 for one with no
 * transfer to leave, one whose transfer was reversed, and one already settled. Returns
 * {withdrawal_id, processor_transfer_id, inconsistency_id, resolved_at}. Security definer:
 * admins neither resolve ledger transfers nor write processor_inconsistencies.
 */
create function private.leave_transfer_with_payee(withdrawal_id uuid, resolution text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  reversal text;
  unreversed public.processor_inconsistencies;
begin
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'leaving a transfer with the payee needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 1900) then
    raise exception 'leaving the transfer of withdrawal % with the payee needs a written '
    'resolution of 10 to 1900 characters', withdrawal_id
    using errcode = 'PT422';
  end if;
  select * into withdrawal from public.withdrawals as w
  where w.id = leave_transfer_with_payee.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if withdrawal.status not in ('failed', 'canceled') or withdrawal.processor_transfer_id is null
  then
    raise exception 'withdrawal % is % with transfer %: there is no unreversed transfer to '
    'leave with the payee', withdrawal.id, withdrawal.status,
    coalesce(withdrawal.processor_transfer_id, 'none')
    using errcode = 'PT409';
  end if;
  select a.processor_object_id into reversal from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded';
  if found then
    raise exception 'the transfer of withdrawal % was reversed by %: its money is back on the '
    'platform', withdrawal.id, reversal
    using errcode = 'PT409';
  end if;
  select * into unreversed from public.processor_inconsistencies as i
  where i.kind = 'transfer_unreversed' and i.processor_object_id = withdrawal.processor_transfer_id
  for update;
  if not found then
    raise exception 'withdrawal % has no transfer_unreversed inconsistency for %',
    withdrawal.id, withdrawal.processor_transfer_id
    using errcode = 'PT409';
  end if;
  if unreversed.resolution is not null then
    raise exception 'the transfer of withdrawal % was settled at %: %', withdrawal.id,
    unreversed.resolved_at, left(unreversed.resolution, 200)
    using errcode = 'PT409';
  end if;
  -- The money left the platform with the transfer: the reservation is posted, as a paid
  -- withdrawal's is.
  perform private.ledger_resolve(private.withdrawal_reservation(withdrawal.id), true);
  update public.processor_inconsistencies as i
  set resolution = 'Left with the payee: ' || leave_transfer_with_payee.resolution
  where i.id = unreversed.id
  returning * into unreversed;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'processor_transfer_id', withdrawal.processor_transfer_id,
    'inconsistency_id', unreversed.id,
    'resolved_at', unreversed.resolved_at
  );
end
$$;

revoke all on function private.leave_transfer_with_payee(uuid, text) from public;
grant execute on function private.leave_transfer_with_payee(uuid, text) to admin;

/** private.leave_transfer_with_payee, with a refusal recorded and answered. */
create function public.leave_transfer_with_payee(withdrawal_id uuid, resolution text)
returns jsonb
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
  return private.leave_transfer_with_payee(withdrawal_id, resolution);
exception when others then
  get stacked diagnostics error_state = returned_sqlstate, error_message = message_text,
  error_detail = pg_exception_detail, error_hint = pg_exception_hint;
  refusal := private.refused_call(
    'leave_transfer_with_payee', 'withdrawals', withdrawal_id::text,
    jsonb_build_object('withdrawal_id', withdrawal_id, 'resolution', resolution),
    error_state, error_message, error_detail, error_hint
  );
  if refusal is null then
    raise;
  end if;
  return refusal;
end
$$;

revoke all on function public.leave_transfer_with_payee(uuid, text)
from public, anon, authenticated, service_role;
grant execute on function public.leave_transfer_with_payee(uuid, text) to admin;

/**
 * As in 20261205020600_processor_inconsistencies.sql, except that a transfer_unreversed
 * inconsistency is refused (PT409): it is settled by recording the transfer's reversal, or by
 * leave_transfer_with_payee, which moves the money with the words.
 */
create or replace function private.resolve_processor_inconsistency(
  inconsistency_id uuid, resolution text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  answer jsonb;
  found_kind text;
begin
  -- The request's claims as PostgREST sets them (staff roles have no USAGE on schema auth).
  if nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'aal'
    is distinct from 'aal2' then
    raise exception 'resolving a processor inconsistency needs MFA (aal2)'
    using errcode = 'PT403';
  end if;
  if not private.is_written(resolution, 2000) then
    raise exception 'resolving processor inconsistency % needs a written resolution of 10 to '
    '2000 characters', inconsistency_id
    using errcode = 'PT422';
  end if;
  select i.kind into found_kind from public.processor_inconsistencies as i
  where i.id = resolve_processor_inconsistency.inconsistency_id;
  if found_kind = 'transfer_unreversed' then
    raise exception 'processor inconsistency % is an unreversed transfer: record its reversal, '
    'or leave it with the payee (leave_transfer_with_payee)', inconsistency_id
    using errcode = 'PT409';
  end if;
  update public.processor_inconsistencies as i
  set resolution = resolve_processor_inconsistency.resolution
  where i.id = resolve_processor_inconsistency.inconsistency_id
  returning to_jsonb(i.*) into answer;
  if answer is null then
    raise exception 'no processor inconsistency %', inconsistency_id using errcode = 'PT404';
  end if;
  return answer;
end
$$;

/**
 * As in 20261205030300_transfer_reversals.sql, without the withdrawals whose transfer was left
 * with the payee.
 */
create or replace function public.withdrawals_to_reverse()
returns table (
  withdrawal_id uuid,
  status text,
  amount_minor bigint,
  currency char(3),
  processor_account_id text,
  processor_transfer_id text,
  reversal_attempt integer,
  reversal_idempotency_key text
)
language sql
stable
set search_path = ''
as $$
  select
    w.id, w.status::text, w.amount_minor, w.currency, pm.processor_account_id,
    w.processor_transfer_id, r.attempt, private.withdrawal_step_key(w.id, 'reversal', r.attempt)
  from public.withdrawals as w
  inner join public.payout_methods as pm on pm.id = w.payout_method_id
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'reversal') as attempt
  ) as r
  where w.status in ('failed', 'canceled') and w.processor_transfer_id is not null
    and not exists (
      select from public.withdrawal_processor_attempts as a
      where a.withdrawal_id = w.id and a.step = 'reversal' and a.status = 'succeeded'
    )
    and not exists (
      select from public.processor_inconsistencies as i
      where i.kind = 'transfer_unreversed' and i.processor_object_id = w.processor_transfer_id
        and i.resolution is not null
    )
  order by w.updated_at, w.id
$$;

/**
 * As in 20261205050200_reservation_kept_until_transfer_reversed.sql, except that a reversal of
 * a transfer left with the payee is refused (PT409): its money was counted as paid out.
 */
create or replace function public.record_withdrawal_transfer_reversal(
  withdrawal_id uuid, reversal_id text
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
  recorded public.withdrawal_processor_attempts;
  at_attempt integer;
begin
  select * into withdrawal from public.withdrawals as w
  where w.id = record_withdrawal_transfer_reversal.withdrawal_id
  for update;
  if not found then
    raise exception 'no withdrawal %', withdrawal_id using errcode = 'PT404';
  end if;
  if coalesce(reversal_id, '') !~ '^trr_[A-Za-z0-9]+$' then
    raise exception 'a transfer reversal''s id is trr_…, not %', coalesce(reversal_id, 'nothing')
    using errcode = 'PT422';
  end if;
  select * into recorded from public.withdrawal_processor_attempts as a
  where a.withdrawal_id = withdrawal.id and a.step = 'reversal' and a.status = 'succeeded';
  if found then
    if recorded.processor_object_id is distinct from reversal_id then
      raise exception 'the transfer of withdrawal % was reversed by %, not %',
      withdrawal.id, recorded.processor_object_id, reversal_id
      using errcode = 'PT409';
    end if;
  else
    if withdrawal.status not in ('failed', 'canceled')
      or withdrawal.processor_transfer_id is null then
      raise exception 'withdrawal % is % with transfer %: there is no transfer to reverse',
      withdrawal.id, withdrawal.status, coalesce(withdrawal.processor_transfer_id, 'none')
      using errcode = 'PT409';
    end if;
    if private.transfer_left_with_payee(withdrawal.id) then
      raise exception 'the transfer of withdrawal % was left with the payee by operations: its '
      'reversal % is not recorded (the money was counted as paid out)', withdrawal.id, reversal_id
      using errcode = 'PT409';
    end if;
    at_attempt := private.withdrawal_step_attempt(withdrawal.id, 'reversal');
    insert into public.withdrawal_processor_attempts as a (
      withdrawal_id, step, attempt, idempotency_key, status, processor_object_id
    )
    values (
      withdrawal.id, 'reversal', at_attempt,
      private.withdrawal_step_key(withdrawal.id, 'reversal', at_attempt), 'succeeded',
      reversal_id
    )
    returning * into recorded;
    -- The money is back on the platform: only now is it back in the wallet.
    perform private.void_reversed_withdrawal_reservation(withdrawal.id);
    update public.processor_inconsistencies as i
    set resolution = 'Reversed: transfer ' || withdrawal.processor_transfer_id || ' of withdrawal '
      || withdrawal.id || ' was reversed by ' || reversal_id
    where i.kind = 'transfer_unreversed'
      and i.processor_object_id = withdrawal.processor_transfer_id
      and i.resolution is null;
  end if;
  return jsonb_build_object(
    'withdrawal_id', withdrawal.id,
    'processor_transfer_id', withdrawal.processor_transfer_id,
    'reversal_id', recorded.processor_object_id,
    'attempt', recorded.attempt
  );
end
$$;
