-- Withdrawals
--
-- A contractor's request to pay out their balance to one of their payout methods: the
-- reservation of the amount in their wallet, approval (two distinct admins at or above a
-- threshold), the transitions of its processing, and the settlement of the reservation.
-- The processor's side (transfers, payouts, their attempts and failures) is in
-- stripe_border.sql.
--
-- Withdrawals move money: a request reserves the amount in the user's wallet (a pending
-- transfer to clearing); payment_service posts it when the payout succeeds, or it is voided
-- when the payout fails or the request is canceled. Released funds are withdrawable only
-- after the payout hold, and a large withdrawal waits for two distinct admins' approval.
--
--   requested -> approved    by the second admin approval (at once below the threshold)
--   approved  -> processing  payment_service, sending the payout
--   processing -> paid       payment_service: the reservation is posted
--   processing -> failed     payment_service: the reservation is voided
--   requested, approved -> canceled   admin, with a written reason: the reservation is voided
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: policies/withdrawals.toml, policies/withdrawal_approvals.toml,
-- tests/sql/withdrawals/

set local check_function_bodies = off;

-- Section: withdrawals

create type public.withdrawal_status as enum (
  'requested', 'approved', 'processing', 'paid', 'failed', 'canceled'
);

create table public.withdrawals (
  id uuid not null default gen_random_uuid(),
  user_id uuid not null default auth.uid(),
  -- One of the owner's payout methods, in the withdrawal's currency (the foreign key below).
  payout_method_id uuid not null,
  amount_minor bigint not null,
  currency char(3) not null,
  status public.withdrawal_status not null default 'requested',
  -- The processing facts, each recorded once by the transition that records it.
  processor_payout_id text,
  failure_reason text,
  processed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- The processor's transfer to the payee's connected account, set once.
  processor_transfer_id text,
  constraint withdrawals_pkey primary key (id),
  constraint withdrawals_user_id_fkey foreign key (user_id) references public.users (id),
  constraint withdrawals_payout_method_owner_currency_fkey
  foreign key (payout_method_id, user_id, currency)
  references public.payout_methods (id, user_id, currency),
  constraint withdrawals_amount_minor_check check (amount_minor > 0),
  constraint withdrawals_currency_check check (currency ~ '^[A-Z]{3}$'),
  constraint withdrawals_processor_payout_id_key unique (processor_payout_id),
  constraint withdrawals_processor_payout_id_check
  check (processor_payout_id ~ '^po_[A-Za-z0-9]+$'),
  constraint withdrawals_failure_reason_check check (char_length(failure_reason) <= 500),
  constraint withdrawals_processor_transfer_id_key unique (processor_transfer_id),
  constraint withdrawals_processor_transfer_id_check
  check (processor_transfer_id ~ '^tr_[A-Za-z0-9]+$')
);

comment on table public.withdrawals is
'A payout of a user''s available balance to one of their payout methods.';

create index withdrawals_user_id_idx on public.withdrawals (user_id);

create index withdrawals_payout_method_id_user_id_currency_idx
on public.withdrawals (payout_method_id, user_id, currency);

create trigger keep_row_timestamps
before insert or update on public.withdrawals
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.withdrawals
for each row execute function private.staff_writes_need_mfa();

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.withdrawals
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'payout_method_id', 'status', 'processed_at', 'created_at', 'updated_at'
);

insert into private.settings (key, value, description)
values (
  'withdrawal_dual_control_threshold_minor',
  '{"default": 500000, "USD": 500000, "EUR": 500000, "GBP": 400000, "JPY": 750000}',
  'Per currency, the amount in minor units at or above which a withdrawal needs two distinct '
  || 'admins'' approval before it is processed.'
);

/** The amount at or above which a withdrawal in `withdrawal_currency` needs dual control. */
create or replace function private.dual_control_threshold(withdrawal_currency char(3))
returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(
      (private.setting('withdrawal_dual_control_threshold_minor') ->> upper(withdrawal_currency))::bigint,
      (private.setting('withdrawal_dual_control_threshold_minor') ->> 'default')::bigint
    )
  );
end
$$;

/**
 * What `owner` may withdraw from their wallet in `wallet_currency` now: the posted balance,
 * less what is reserved, less what was released to them within the payout hold. Call it
 * with the wallet locked, so that two requests cannot both count the same funds.
 */
create or replace function private.withdrawable(owner uuid, wallet_currency char(3)) returns bigint
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select
      b.credits_posted - b.debits_posted - b.debits_pending
      - coalesce((
        select sum(t.amount) from private.ledger_transfers as t
        where t.credit_account_id = b.account_id and t.code = 'milestone_release'
          and t.created_at > now() - make_interval(
            secs => (private.setting('payout_hold_seconds') #>> '{}')::bigint
          )
      ), 0)
    from private.ledger_limited_balances as b
    where b.kind = 'user_wallet' and b.user_id = owner and b.currency = wallet_currency
  );
end
$$;

-- Section: requesting a withdrawal
--
-- A withdrawal is paid out in its payout method's currency, to its owner's payout method:
--   * requesting one in another currency than its payout method's is refused (PT422), before
--     anything is reserved;
--   * a foreign key makes each withdrawal's (payout method, owner, currency) those of a
--     payout method, for every role that writes withdrawals, the tables' owner included;
--   * a payout method that a withdrawal names keeps its owner and currency (PT409): a bank
--     account in another currency is another payout method. A withdrawal's own payout
--     method, owner and currency never change (check_withdrawal_transition).
-- A user who names another user's payout method is refused by the insert policy ("Users can
-- withdraw only to their own payout methods") exactly as for one that does not exist: the
-- currency check reads only the requester's own payout methods, so it tells nobody the
-- currency, or the existence, of anyone else's.

/**
 * BEFORE INSERT trigger on withdrawals: the currency matches the payout method's; then the
 * amount is reserved in the owner's wallet (a pending transfer to processor clearing), under
 * the wallet's lock. Below the dual-control threshold, counted over the owner's withdrawals
 * of the day, the withdrawal starts approved. Its processing facts (payout id, failure
 * reason, time) start empty: the transitions that happen later record them.
 */
create or replace function private.reserve_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  method_currency char(3);
  wallet uuid;
  available bigint;
begin
  -- Only the owner's own payout methods are read: any other id is refused by the insert
  -- policy (or the foreign key), with the same answer whoever owns it.
  select m.currency into method_currency from public.payout_methods as m
  where m.id = new.payout_method_id and m.user_id = new.user_id;
  if found and method_currency <> new.currency then
    raise exception 'a withdrawal in % cannot go to payout method %, which pays out in %',
    new.currency, new.payout_method_id, method_currency
    using errcode = 'PT422',
    hint = 'a withdrawal is in its payout method''s currency: request it in that currency, '
    || 'or add a payout method in this one';
  end if;
  wallet := private.ledger_wallet(new.user_id, new.currency);
  -- Lock the wallet first: the hold arithmetic below must see no concurrent reservation.
  perform 1 from private.ledger_accounts as a where a.id = wallet for no key update;
  available := coalesce(private.withdrawable(new.user_id, new.currency), 0);
  if new.amount_minor > available then
    raise exception 'withdrawal of % % exceeds the % % available to withdraw',
    new.amount_minor, new.currency, available, new.currency
    using errcode = 'PT409',
    hint = 'released funds become withdrawable after the payout hold';
  end if;
  -- Dual control counts the day: splitting a large withdrawal into small ones does not
  -- avoid it. A payout method in its cool-down (payment_methods.sql) needs it whatever the
  -- amount.
  new.status := case
    when private.payout_method_cool_down_until(new.payout_method_id) > now() then 'requested'
    when new.amount_minor + coalesce((
      select sum(w.amount_minor) from public.withdrawals as w
      where w.user_id = new.user_id and w.currency = new.currency
        and w.status not in ('failed', 'canceled')
        and w.created_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
    ), 0) >= private.dual_control_threshold(new.currency) then 'requested'
    else 'approved'
  end::public.withdrawal_status;
  new.processor_payout_id := null;
  new.failure_reason := null;
  new.processed_at := null;
  perform private.ledger_transfer(
    'withdrawal', wallet, private.ledger_system_account('processor_clearing', new.currency),
    new.amount_minor, new.currency, true, 'withdrawal', new.id
  );
  return new;
end
$$;

create trigger reserve_withdrawal
before insert on public.withdrawals
for each row execute function private.reserve_withdrawal();

/** The pending transfer that reserves a withdrawal's amount. */
create or replace function private.withdrawal_reservation(withdrawal uuid) returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select t.id from private.ledger_transfers as t
    where t.reference_type = 'withdrawal' and t.reference_id = withdrawal and t.kind = 'pending'
  );
end
$$;

/**
 * BEFORE UPDATE trigger on payout_methods: a payout method that a withdrawal names keeps its
 * id, owner and currency, so that every withdrawal stays what it was, a payout to its owner
 * in its payout method's currency. Security definer, to see every withdrawal whatever the
 * updating role may read; only roles that may change these columns reach it
 * (payment_service, service_role).
 */
create or replace function private.keep_payout_method_of_withdrawals() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (new.id, new.user_id, new.currency) is distinct from (old.id, old.user_id, old.currency)
    and exists (select from public.withdrawals as w where w.payout_method_id = old.id) then
    raise exception 'payout method % has withdrawals: its owner and currency never change',
    old.id
    using errcode = 'PT409',
    hint = 'add a new payout method for another account, owner or currency';
  end if;
  return new;
end
$$;

create trigger keep_payout_method_of_withdrawals
before update of id, user_id, currency on public.payout_methods
for each row execute function private.keep_payout_method_of_withdrawals();

-- Section: transitions and settlement

/**
 * True when the withdrawal may be paid out as far as its payout method's cool-down goes: the
 * cool-down is over (or none was started), or two distinct admins approved the withdrawal.
 */
create or replace function private.withdrawal_clear_of_cool_down(withdrawal uuid)
returns boolean
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(pm.cool_down_until <= now(), true) or (
      select count(distinct a.approved_by) from public.withdrawal_approvals as a
      where a.withdrawal_id = w.id
    ) >= 2
    from public.withdrawals as w
    join public.payout_methods as pm on pm.id = w.payout_method_id
    where w.id = withdrawal
  );
end
$$;

grant execute on function private.withdrawal_clear_of_cool_down(uuid) to payment_service;

/**
 * BEFORE UPDATE trigger on withdrawals: the transitions, who makes them, and the facts each
 * one records: the processor's payout id once, when the payout is sent or paid; a failure
 * reason once, when it fails or is canceled (a written one to cancel); the time it was
 * processed, by the database, when it ends. A settled withdrawal takes one change only:
 * payment_service recording the transfer of a withdrawal that failed or was canceled while
 * its transfer request was unanswered (keep_withdrawal_transfer checks that it was), and
 * nothing else with it.
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

create trigger check_withdrawal_transition
before update on public.withdrawals
for each row execute function private.check_withdrawal_transition();

/**
 * AFTER UPDATE trigger on withdrawals: settles the reservation when the withdrawal ends. A
 * paid withdrawal posts it. A withdrawal that fails or is canceled voids it, unless the
 * processor may hold its transfer: while its transfer request is unanswered, the reservation
 * is kept until the processor is found to have no transfer for it
 * (record_withdrawal_transfer_not_made, or a refusal recorded); once a transfer is recorded,
 * it is kept until the reversal of that transfer (record_withdrawal_transfer).
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

create trigger settle_withdrawal
after update of status on public.withdrawals
for each row
when (old.status is distinct from new.status)
execute function private.settle_withdrawal();

/**
 * BEFORE DELETE trigger on withdrawals: a settled withdrawal is a financial record, and is
 * never deleted, by any role (no API role may delete withdrawals at all; this holds the
 * tables' owner too).
 */
create or replace function private.keep_settled_withdrawals() returns trigger
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

create trigger keep_settled_withdrawals
before delete on public.withdrawals
for each row execute function private.keep_settled_withdrawals();

-- Section: approvals (dual control)

create table public.withdrawal_approvals (
  id uuid not null default gen_random_uuid(),
  withdrawal_id uuid not null,
  approved_by uuid not null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  reason text,
  constraint withdrawal_approvals_pkey primary key (id),
  constraint withdrawal_approvals_withdrawal_id_fkey foreign key (withdrawal_id)
  references public.withdrawals (id),
  constraint withdrawal_approvals_approved_by_fkey foreign key (approved_by)
  references public.users (id),
  -- An admin approves a withdrawal once: the second approval comes from another admin.
  constraint withdrawal_approvals_withdrawal_id_approved_by_key unique (withdrawal_id, approved_by)
);

-- Every approval carries a written reason. Not valid: the approvals recorded before reasons
-- were asked for have none, and stay as they were recorded.
alter table public.withdrawal_approvals
add constraint withdrawal_approvals_reason_check check (private.is_written(reason, 2000)) not valid;

comment on table public.withdrawal_approvals is
'Admins'' approvals of large withdrawals (dual control): two distinct admins, neither the '
'withdrawal''s owner.';

comment on column public.withdrawal_approvals.reason is
'Why the admin approved the withdrawal, in their own words: 10 to 2000 characters.';

create index withdrawal_approvals_approved_by_idx on public.withdrawal_approvals (approved_by);

create trigger keep_row_timestamps
before insert or update on public.withdrawal_approvals
for each row execute function private.keep_row_timestamps();

-- A staff member's write needs MFA, and a recent step-up (helpers.sql).
create trigger staff_writes_need_mfa
before insert or update or delete on public.withdrawal_approvals
for each row execute function private.staff_writes_need_mfa('step_up');

-- The columns listed cannot hold card data; every other one is read.
create trigger refuse_card_data
before insert or update
on public.withdrawal_approvals
for each row
execute function private.refuse_card_data(
  'id', 'withdrawal_id', 'approved_by', 'created_at', 'updated_at'
);

/**
 * BEFORE INSERT trigger on withdrawal_approvals: who (never the withdrawal's owner, PT403),
 * whether (the withdrawal waits for approval, PT409), then what (a reason that
 * private.is_written accepts, PT422), in that order. Security definer, to lock the
 * withdrawal whatever the approver may read.
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

create trigger check_withdrawal_approval
before insert on public.withdrawal_approvals
for each row execute function private.check_withdrawal_approval();

/** AFTER INSERT trigger on withdrawal_approvals: the second distinct approval approves. */
create or replace function private.approve_withdrawal_when_two() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if (
    select count(distinct a.approved_by) from public.withdrawal_approvals as a
    where a.withdrawal_id = new.withdrawal_id
  ) >= 2 then
    update public.withdrawals set status = 'approved' where id = new.withdrawal_id;
  end if;
  return null;
end
$$;

create trigger approve_withdrawal_when_two
after insert on public.withdrawal_approvals
for each row execute function private.approve_withdrawal_when_two();

/**
 * BEFORE UPDATE OR DELETE trigger on withdrawal_approvals: once its withdrawal was acted on
 * (approved, processed or canceled), an approval is a settled record and never changes. No
 * API role may update or delete approvals at all; this holds the tables' owner too.
 */
create or replace function private.keep_acted_on_approvals() returns trigger
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

create trigger keep_acted_on_approvals
before update or delete on public.withdrawal_approvals
for each row execute function private.keep_acted_on_approvals();

/**
 * An admin approves a withdrawal that waits for dual control, saying why. The same key with
 * the same parameters replays the first answer.
 */
create or replace function private.approve_withdrawal(
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

grant execute on function private.approve_withdrawal(uuid, text, text) to admin;

/**
 * private.approve_withdrawal, with a refusal recorded and answered as PostgREST would (see
 * private.refused_call).
 */
create or replace function public.approve_withdrawal(
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

grant execute on function approve_withdrawal(uuid, text, text) to admin;
