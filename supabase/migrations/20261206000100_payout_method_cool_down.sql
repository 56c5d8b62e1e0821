-- A payout method added, changed or verified starts a cool-down (payout_method_cool_down_seconds,
-- 72 hours): the user is told, a payout_method_changed security alert is raised, and a
-- withdrawal to it needs two admins' approval until the cool-down ends.

alter type public.security_alert_kind add value if not exists 'payout_method_changed';

alter table public.payout_methods add column cool_down_until timestamptz;

-- The card-data guard and the audit trigger name the columns that cannot hold card data.
drop trigger refuse_card_data on public.payout_methods;

create trigger refuse_card_data
before insert or update
on public.payout_methods
for each row
execute function private.refuse_card_data(
  'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at', 'cool_down_until'
);

drop trigger audit_trail on public.payout_methods;

create trigger audit_trail
after insert or delete or update
on public.payout_methods
for each row
execute function private.capture_audit_row(
  'id', 'id', 'user_id', 'type', 'is_default', 'created_at', 'updated_at', 'cool_down_until'
);

comment on column public.payout_methods.cool_down_until is
'Until then, a withdrawal to this payout method needs two admins'' approval. Set by the '
'database when it is added, changes destination or is verified '
'(payout_method_cool_down_seconds).';

insert into private.settings (key, value, description)
values (
  'payout_method_cool_down_seconds', '259200',
  'After a payout method is added, changed or verified, withdrawals to it need two admins'' '
  || 'approval for this many seconds.'
);


/**
 * What a write to a payout method changed that starts a cool-down: `added` (an insert),
 * `changed` (its type, currency, bank name or last4), `verified` (a move to verified); null
 * for anything else (a nickname, a default, a token sealed or indexed anew).
 */
create or replace function private.payout_method_change(
  operation text, old_method public.payout_methods, new_method public.payout_methods
) returns text
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case
    when operation = 'INSERT' then 'added'
    when (new_method.type, new_method.currency, new_method.bank_name, new_method.last4)
      is distinct from
      (old_method.type, old_method.currency, old_method.bank_name, old_method.last4)
      then 'changed'
    when new_method.verification_status = 'verified'
      and old_method.verification_status <> 'verified' then 'verified'
  end;
end
$$;

/**
 * BEFORE INSERT OR UPDATE trigger on payout_methods: cool_down_until, the database's alone.
 * A change that starts a cool-down (private.payout_method_change) sets it to
 * payout_method_cool_down_seconds from now; any other write keeps it.
 */
create or replace function private.start_payout_method_cool_down() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.payout_method_change(tg_op, old, new) is not null then
    new.cool_down_until := now() + make_interval(
      secs => (private.setting('payout_method_cool_down_seconds') #>> '{}')::numeric
    );
  elsif tg_op = 'UPDATE' then
    new.cool_down_until := old.cool_down_until;
  end if;
  return new;
end
$$;

create trigger start_payout_method_cool_down
before insert or update on public.payout_methods
for each row execute function private.start_payout_method_cool_down();

/**
 * AFTER INSERT OR UPDATE trigger on payout_methods: when the write started a cool-down
 * (private.payout_method_change), the user is told and a payout_method_changed security alert
 * is raised, naming the change.
 */
create or replace function private.tell_of_payout_method_change() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  change text := private.payout_method_change(tg_op, old, new);
  described text := concat_ws(
    ' ', coalesce(new.bank_name, replace(new.type::text, '_', ' ')),
    case when new.last4 is not null then 'ending ' || new.last4 end
  );
begin
  if change is null then
    return null;
  end if;
  perform private.notify(
    new.user_id, 'payout_method.' || change,
    left(
      format(
        'Payout method %s (%s): withdrawals to it need staff approval until %s UTC. '
        || 'Not you? Contact support now.',
        change, described,
        to_char(new.cool_down_until at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
      ),
      200
    )
  );
  perform private.raise_security_alert(
    'payout_method_changed', new.user_id, 'payout_methods.' || change,
    jsonb_build_object(
      'payout_method_id', new.id, 'change', change, 'cool_down_until', new.cool_down_until
    )
  );
  return null;
end
$$;

create trigger tell_of_payout_method_change
after insert or update on public.payout_methods
for each row execute function private.tell_of_payout_method_change();

/** When the cool-down of `payout_method` ends; null when none was started. */
create or replace function private.payout_method_cool_down_until(payout_method uuid)
returns timestamptz
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  return (select pm.cool_down_until from public.payout_methods as pm where pm.id = payout_method);
end
$$;

grant execute on function private.payout_method_cool_down_until(uuid) to payment_service;

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

/**
 * The approved withdrawals not yet paid out to a payable payout method, with what a payout
 * needs (payment_service): the amount and currency, the payout method, its connected account
 * (its row and its sealed token, which the payouts function opens; the payout goes to the
 * account's external account at the processor), the transfer id if one was already
 * recorded, the idempotency keys to send (those of the attempt each step is at: a step the
 * processor refused gets the next key), the attempts' numbers, and the last refusal's code, if
 * any.
 */
create or replace function public.withdrawals_to_pay_out()
returns table (
  withdrawal_id uuid,
  user_id uuid,
  amount_minor bigint,
  currency char(3),
  account_id uuid,
  account_sealed jsonb,
  payout_method_id uuid,
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
    w.id, w.user_id, w.amount_minor, w.currency, account.id,
    account.processor_account_id_sealed, pm.id, w.processor_transfer_id,
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
  inner join public.processor_accounts as account
    on account.processor_account_id_lookup = pm.processor_account_id_lookup
  cross join lateral (
    select private.withdrawal_step_attempt(w.id, 'transfer') as attempt
  ) as t
  cross join lateral (select private.withdrawal_step_attempt(w.id, 'payout') as attempt) as p
  where w.status = 'approved' and w.processor_payout_id is null
    -- Not during its payout method's cool-down, unless two admins approved it (withdrawals.sql).
    and private.withdrawal_clear_of_cool_down(w.id)
    and private.payout_method_payable(pm.id)
  order by w.created_at, w.id
$$;
