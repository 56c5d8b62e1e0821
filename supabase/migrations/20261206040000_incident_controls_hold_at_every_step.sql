-- The incident controls hold at every step that starts a movement: a payout step begins
-- neither while payouts are frozen, for a suspended owner, nor during its payout method's
-- cool-down (without two admins' approval); a suspended payer's payment is released by no
-- one; a user's own charge begins neither while funding is frozen nor while suspended; and
-- no admin suspends or lifts their own payments.


/**
 * BEFORE INSERT OR UPDATE trigger on payment_suspensions and platform_freezes, whose first
 * argument names the column of the admin who made it: the acting admin is recorded as its
 * maker on insert, and as its lifter when it is lifted; a record is lifted once, and nothing
 * else of it ever changes (PT409). No admin suspends their own payments or lifts their own
 * suspension (PT403). Security definer, to read the request's user (auth.uid()).
 */
create or replace function private.keep_lever_record() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  maker text := tg_argv[0];
  actor uuid := (select auth.uid());
begin
  if tg_table_name = 'payment_suspensions' and actor = (to_jsonb(new) ->> 'user_id')::uuid then
    raise exception 'no admin suspends their own payments, or lifts their own suspension'
    using errcode = 'PT403', hint = 'another admin decides';
  end if;
  if tg_op = 'INSERT' then
    new := jsonb_populate_record(new, jsonb_build_object(maker, actor));
    new.lifted_at := null;
    new.lifted_by := null;
    new.lift_reason := null;
    return new;
  end if;
  if old.lifted_at is not null then
    raise exception '%.% % was lifted already: it never changes', tg_table_schema, tg_table_name,
    old.id
    using errcode = 'PT409';
  end if;
  if (to_jsonb(new) - 'lifted_at' - 'lifted_by' - 'lift_reason' - 'updated_at')
    is distinct from (to_jsonb(old) - 'lifted_at' - 'lifted_by' - 'lift_reason' - 'updated_at')
  then
    raise exception '%.% %: only its lifting is recorded after it is made', tg_table_schema,
    tg_table_name, old.id
    using errcode = 'PT409';
  end if;
  new.lifted_at := now();
  new.lifted_by := actor;
  return new;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger on milestone_payments: a user whose money movement is
 * suspended creates no milestone payment (PT403); and a payment whose payer is suspended, or
 * whose releaser is, is not released (PT403), whoever releases it: the payer, the payee after
 * a lapsed review, or private.release_lapsed_reviews. Anything else (a cancel, the
 * processor's record of a funding, staff settling a dispute) goes on.
 */
create or replace function private.refuse_suspended_payer() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if tg_op = 'INSERT' then
    if actor is not null and private.payment_suspension(actor) is not null then
      raise exception 'the payments of user % are suspended', actor
      using errcode = 'PT403', hint = 'contact support';
    end if;
  elsif old.status = 'funded' and new.status = 'released' then
    if private.payment_suspension(old.payer_id) is not null then
      raise exception 'the payments of user % are suspended', old.payer_id
      using errcode = 'PT403', hint = 'the payment waits until the suspension is lifted';
    end if;
    if actor is not null and private.payment_suspension(actor) is not null then
      raise exception 'the payments of user % are suspended', actor
      using errcode = 'PT403', hint = 'contact support';
    end if;
  end if;
  return new;
end
$$;

/**
 * BEFORE INSERT trigger on payment_transactions: a charge a user starts (the request's role is
 * authenticated) begins neither while funding is frozen (PT503) nor while their payments are
 * suspended (PT403). What the processor reports (payment_service) is recorded whatever holds.
 */
create or replace function private.refuse_frozen_charge() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  actor uuid := (select auth.uid());
begin
  if current_setting('role', true) is distinct from 'authenticated' then
    return new;
  end if;
  if private.platform_freeze('funding') is not null then
    raise exception 'funding is frozen platform-wide for now'
    using errcode = 'PT503', hint = 'try again once operations lift the freeze';
  end if;
  if private.payment_suspension(actor) is not null then
    raise exception 'the payments of user % are suspended', actor
    using errcode = 'PT403', hint = 'contact support';
  end if;
  return new;
end
$$;

create trigger refuse_frozen_charge
before insert on public.payment_transactions
for each row execute function private.refuse_frozen_charge();

/**
 * Refuse to start a request of a payout step (begin_withdrawal_step, stripe_border.sql) for
 * `withdrawal`: not while payouts are frozen (PT503), not for an owner whose payments are
 * suspended (PT403), not while its payout method is in its cool-down unless two admins
 * approved it (PT409). A request made already is resumed under its key whatever holds: the
 * processor may have carried it out.
 */
create or replace function private.refuse_payout_start(withdrawal uuid) returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  owner_id uuid := (select w.user_id from public.withdrawals as w where w.id = withdrawal);
begin
  if private.platform_freeze('payouts') is not null then
    raise exception 'payouts are frozen platform-wide for now'
    using errcode = 'PT503', hint = 'the withdrawal is paid out once operations lift the freeze';
  end if;
  if private.payment_suspension(owner_id) is not null then
    raise exception 'the payments of user % are suspended', owner_id
    using errcode = 'PT403', hint = 'the withdrawal waits until the suspension is lifted';
  end if;
  if not private.withdrawal_clear_of_cool_down(withdrawal) then
    raise exception 'withdrawal %: its payout method is in its cool-down', withdrawal
    using errcode = 'PT409',
    hint = 'it is paid out when the cool-down ends, or once two admins approve it';
  end if;
end
$$;

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
create or replace function public.begin_withdrawal_step(withdrawal_id uuid, step text) returns jsonb
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
    -- A new request starts only while no freeze, suspension or cool-down holds it
    -- (incident_controls.sql); one made already is resumed under its key.
    perform private.refuse_payout_start(withdrawal.id);
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
