-- Withdrawals move money: a request reserves the amount in the user's wallet (a pending
-- transfer to clearing); payment_service posts it when the payout succeeds, or voids it
-- when the payout fails or the request is canceled. Released funds are withdrawable only
-- after the payout hold, and a large withdrawal waits for two distinct admins' approval.
--
--   requested -> approved    by the second admin approval (automatically below the threshold)
--   approved  -> processing  payment_service, sending the payout
--   processing -> paid       payment_service: the reservation is posted
--   processing -> failed     payment_service: the reservation is voided
--   requested, approved -> canceled   admin: the reservation is voided

insert into private.settings (key, value, description)
values (
  'withdrawal_dual_control_threshold_minor',
  '{"default": 500000, "USD": 500000, "EUR": 500000, "GBP": 400000, "JPY": 750000}',
  'Per currency, the amount in minor units at or above which a withdrawal needs two distinct '
  || 'admins'' approval before it is processed.'
);

create table public.withdrawal_approvals (
  id uuid primary key default gen_random_uuid(),
  withdrawal_id uuid not null references public.withdrawals (id),
  approved_by uuid not null default auth.uid() references public.users (id),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (withdrawal_id, approved_by)
);

comment on table public.withdrawal_approvals is
'Admins'' approvals of large withdrawals (dual control): two distinct admins, neither the '
'withdrawal''s owner.';

create index withdrawal_approvals_approved_by_idx on public.withdrawal_approvals (approved_by);

create trigger keep_row_timestamps
before insert or update on public.withdrawal_approvals
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.withdrawal_approvals
for each row execute function private.refuse_card_data();

/** The amount at or above which a withdrawal in `withdrawal_currency` needs dual control. */
create function private.dual_control_threshold(withdrawal_currency char(3)) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (private.setting('withdrawal_dual_control_threshold_minor') ->> upper(withdrawal_currency))::bigint,
    (private.setting('withdrawal_dual_control_threshold_minor') ->> 'default')::bigint
  )
$$;

/**
 * What `owner` may withdraw from their wallet in `wallet_currency` now: the posted balance,
 * less what is reserved, less what was released to them within the payout hold. Call it
 * with the wallet locked, so that two requests cannot both count the same funds.
 */
create function private.withdrawable(owner uuid, wallet_currency char(3)) returns bigint
language sql
stable
security definer
set search_path = ''
as $$
  select
    a.credits_posted - a.debits_posted - a.debits_pending
    - coalesce((
      select sum(t.amount) from private.ledger_transfers as t
      where t.credit_account_id = a.id and t.code = 'milestone_release'
        and t.created_at > now() - make_interval(
          secs => (private.setting('payout_hold_seconds') #>> '{}')::bigint
        )
    ), 0)
  from private.ledger_accounts as a
  where a.kind = 'user_wallet' and a.user_id = owner and a.currency = wallet_currency
$$;

/**
 * BEFORE INSERT trigger on withdrawals: reserve the amount in the owner's wallet, or refuse.
 * A withdrawal below the dual-control threshold is approved at once.
 */
create function private.reserve_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  wallet uuid := private.ledger_wallet(new.user_id, new.currency);
  available bigint;
begin
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
  -- avoid it.
  new.status := case
    when new.amount_minor + coalesce((
      select sum(w.amount_minor) from public.withdrawals as w
      where w.user_id = new.user_id and w.currency = new.currency
        and w.status not in ('failed', 'canceled')
        and w.created_at >= date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
    ), 0) >= private.dual_control_threshold(new.currency) then 'requested'
    else 'approved'
  end::public.withdrawal_status;
  new.processor_payout_id := null;
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
create function private.withdrawal_reservation(withdrawal uuid) returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select t.id from private.ledger_transfers as t
  where t.reference_type = 'withdrawal' and t.reference_id = withdrawal and t.kind = 'pending'
$$;

/**
 * BEFORE UPDATE trigger on withdrawals: who may move a withdrawal where; what was requested
 * never changes. Security invoker, so that it knows who asks.
 */
create function private.check_withdrawal_transition() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  allowed text[];
begin
  if (new.user_id, new.payout_method_id, new.amount_minor, new.currency)
    is distinct from (old.user_id, old.payout_method_id, old.amount_minor, old.currency) then
    raise exception 'withdrawal %: its owner, payout method, amount and currency never change',
    old.id
    using errcode = 'PT409';
  end if;
  if new.status = old.status then
    return new;
  end if;
  allowed := case old.status::text || '>' || new.status::text
    when 'requested>approved' then array['postgres']
    when 'approved>processing' then array['payment_service']
    when 'processing>paid' then array['payment_service']
    when 'processing>failed' then array['payment_service']
    when 'requested>canceled' then array['admin']
    when 'approved>canceled' then array['admin']
  end;
  if allowed is null then
    raise exception 'withdrawal % cannot go from % to %', old.id, old.status, new.status
    using errcode = 'PT409';
  end if;
  if not current_user = any(allowed) then
    raise exception 'withdrawal % cannot be moved from % to % by %',
    old.id, old.status, new.status, current_user
    using errcode = 'PT403',
    hint = case
      when new.status = 'approved' then 'two distinct admins approve it, in withdrawal_approvals'
    end;
  end if;
  if new.status = 'approved' and (
    select count(distinct a.approved_by) from public.withdrawal_approvals as a
    where a.withdrawal_id = old.id
  ) < 2 then
    raise exception 'withdrawal % needs two distinct admins'' approval', old.id
    using errcode = 'PT403';
  end if;
  if new.status = 'paid' and new.processor_payout_id is null then
    raise exception 'withdrawal % needs the processor''s payout id to be paid', old.id
    using errcode = 'PT422';
  end if;
  if new.status in ('paid', 'failed', 'canceled') then
    new.processed_at := now();
  end if;
  return new;
end
$$;

create trigger check_withdrawal_transition
before update on public.withdrawals
for each row execute function private.check_withdrawal_transition();

/** AFTER UPDATE trigger on withdrawals: post or void the reservation. */
create function private.settle_withdrawal() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.status = 'paid' then
    perform private.ledger_resolve(private.withdrawal_reservation(new.id), true);
  elsif new.status in ('failed', 'canceled') then
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
 * BEFORE INSERT trigger on withdrawal_approvals: only for a withdrawal that waits for
 * approval, and never by its owner.
 */
create function private.check_withdrawal_approval() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  withdrawal public.withdrawals;
begin
  -- Locked, so that concurrent approvals count each other (see the trigger below).
  select * into withdrawal from public.withdrawals as w where w.id = new.withdrawal_id
  for update;
  if not found or withdrawal.status <> 'requested' then
    raise exception 'withdrawal % is not waiting for approval', new.withdrawal_id
    using errcode = 'PT409';
  end if;
  if withdrawal.user_id = new.approved_by then
    raise exception 'no one approves their own withdrawal' using errcode = 'PT403';
  end if;
  return new;
end
$$;

create trigger check_withdrawal_approval
before insert on public.withdrawal_approvals
for each row execute function private.check_withdrawal_approval();

/** AFTER INSERT trigger on withdrawal_approvals: the second distinct approval approves. */
create function private.approve_withdrawal_when_two() returns trigger
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

revoke all on function private.dual_control_threshold(char) from public;
revoke all on function private.withdrawable(uuid, char) from public;
revoke all on function private.reserve_withdrawal() from public;
revoke all on function private.withdrawal_reservation(uuid) from public;
revoke all on function private.check_withdrawal_transition() from public;
revoke all on function private.settle_withdrawal() from public;
revoke all on function private.check_withdrawal_approval() from public;
revoke all on function private.approve_withdrawal_when_two() from public;
