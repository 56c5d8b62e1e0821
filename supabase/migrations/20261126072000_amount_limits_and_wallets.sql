-- Amount limits per operation and per day, and the wallet balances users may read.

insert into private.settings (key, value, description)
values (
  'amount_limits',
  '{
    "milestone_payments.insert": {"per_operation": 5000000, "per_day": 20000000},
    "payment_transactions.insert": {"per_operation": 1000000, "per_day": 5000000},
    "withdrawals.insert": {"per_operation": 2500000, "per_day": 5000000}
  }',
  'Per operation, the largest amount one request may move and the most one user may move '
  || 'in a UTC day, in minor units of any currency.'
);

-- What each user moved per operation, currency and UTC day.
create table private.daily_amounts (
  user_id uuid not null references public.users (id) on delete cascade,
  operation text not null,
  currency char(3) not null,
  utc_day date not null,
  total_minor bigint not null check (total_minor >= 0),
  primary key (user_id, operation, currency, utc_day)
);

/**
 * Refuse (PT422) an amount over the operation's limit, or one that would take the user's
 * total for the day over its daily limit; otherwise count it. Only users' requests.
 */
create function private.enforce_amount_limit(
  requested_operation text, amount bigint, amount_currency char(3)
) returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  requester uuid := (select auth.uid());
  limits jsonb := private.setting('amount_limits') -> requested_operation;
  moved_today bigint;
begin
  -- No amount: a row that the policies or constraints refuse next, saying nothing more here.
  if requester is null or limits is null or amount is null
    or current_setting('role', true) is distinct from 'authenticated' then
    return;
  end if;
  if amount > (limits ->> 'per_operation')::bigint then
    raise exception '% of % % is over the limit of % per operation',
    requested_operation, amount, amount_currency, limits ->> 'per_operation'
    using errcode = 'PT422';
  end if;
  insert into private.daily_amounts as d (user_id, operation, currency, utc_day, total_minor)
  values (requester, requested_operation, amount_currency, (now() at time zone 'UTC')::date, amount)
  on conflict (user_id, operation, currency, utc_day)
  do update set total_minor = d.total_minor + excluded.total_minor
  returning d.total_minor into moved_today;
  if moved_today > (limits ->> 'per_day')::bigint then
    raise exception '% of % % would take today''s total to %, over the daily limit of %',
    requested_operation, amount, amount_currency, moved_today, limits ->> 'per_day'
    using errcode = 'PT422';
  end if;
end
$$;

/** BEFORE INSERT trigger: the amount limits of the operation. */
create function private.limit_amount() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.enforce_amount_limit(
    tg_table_name || '.insert', new.amount_minor, new.currency
  );
  return new;
end
$$;

-- After derive_milestone_payment (alphabetical order), so the amount is the milestone's.
create trigger limit_amount
before insert on public.milestone_payments
for each row execute function private.limit_amount();
create trigger limit_amount
before insert on public.payment_transactions
for each row execute function private.limit_amount();
create trigger limit_amount
before insert on public.withdrawals
for each row execute function private.limit_amount();

/**
 * The requesting user's wallets: posted balance, what is reserved by pending withdrawals,
 * and what they may withdraw now. Nobody else's.
 */
create function private.requester_wallets() returns table (
  currency char(3), posted_minor bigint, reserved_minor bigint, withdrawable_minor bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select
    a.currency,
    a.credits_posted - a.debits_posted,
    a.debits_pending,
    private.withdrawable(a.user_id, a.currency)
  from private.ledger_accounts as a
  where a.kind = 'user_wallet' and a.user_id = (select auth.uid())
  order by a.currency
$$;

/** The caller's wallet balances, from the ledger (PostgREST: /rpc/my_wallet_balances). */
create function public.my_wallet_balances() returns table (
  currency char(3), posted_minor bigint, reserved_minor bigint, withdrawable_minor bigint
)
language sql
stable
set search_path = ''
as $$
  select * from private.requester_wallets()
$$;

revoke all on function private.enforce_amount_limit(text, bigint, char) from public;
revoke all on function private.limit_amount() from public;
revoke all on function private.requester_wallets() from public;
grant execute on function private.requester_wallets() to authenticated;
grant execute on function public.my_wallet_balances() to authenticated;
