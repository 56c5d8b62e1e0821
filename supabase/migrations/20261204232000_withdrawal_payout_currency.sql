-- A withdrawal is paid out in its payout method's currency, to its owner's payout method.
--
-- A withdrawal in USD to a payout method that pays out in EUR was accepted, approved and
-- paid: nothing compared the two currencies. Now:
--   * requesting one in another currency than its payout method's is refused (PT422), before
--     anything is reserved;
--   * a foreign key makes each withdrawal's (payout method, owner, currency) those of a
--     payout method, for every role that writes withdrawals, the tables' owner included;
--   * a payout method that a withdrawal names keeps its owner and currency (PT409): a bank
--     account in another currency is another payout method. A withdrawal's own payout
--     method, owner and currency never change already (check_withdrawal_transition).
-- A user who names another user's payout method is refused by the insert policy ("Users can
-- withdraw only to their own payout methods") exactly as for one that does not exist: the
-- currency check reads only the requester's own payout methods, so it tells nobody the
-- currency, or the existence, of anyone else's.

/**
 * BEFORE INSERT trigger on withdrawals: the currency matches the payout method's; then the
 * amount is reserved in the owner's wallet, as in 20261126070500_withdrawal_money.sql.
 * Its processing facts (payout id, failure reason, time) start empty: the transitions that
 * happen later record them.
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
  new.failure_reason := null;
  new.processed_at := null;
  perform private.ledger_transfer(
    'withdrawal', wallet, private.ledger_system_account('processor_clearing', new.currency),
    new.amount_minor, new.currency, true, 'withdrawal', new.id
  );
  return new;
end
$$;

-- The same rule as a key, for every path: (payout method, owner, currency) of a withdrawal
-- are those of one payout method. It replaces the key on the payout method alone, and its
-- index the index on payout_method_id alone.
alter table public.payout_methods
add constraint payout_methods_id_user_id_currency_key unique (id, user_id, currency);

create index withdrawals_payout_method_id_user_id_currency_idx
on public.withdrawals (payout_method_id, user_id, currency);

alter table public.withdrawals
add constraint withdrawals_payout_method_owner_currency_fkey
foreign key (payout_method_id, user_id, currency)
references public.payout_methods (id, user_id, currency);

alter table public.withdrawals drop constraint withdrawals_payout_method_id_fkey;

drop index public.withdrawals_payout_method_id_idx;

/**
 * BEFORE UPDATE trigger on payout_methods: a payout method that a withdrawal names keeps its
 * id, owner and currency, so that every withdrawal stays what it was, a payout to its owner
 * in its payout method's currency. Security definer, to see every withdrawal whatever the
 * updating role may read; only roles that may change these columns reach it
 * (payment_service, service_role).
 */
create function private.keep_payout_method_of_withdrawals() returns trigger
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

revoke all on function private.keep_payout_method_of_withdrawals() from public;

create trigger keep_payout_method_of_withdrawals
before update of id, user_id, currency on public.payout_methods
for each row execute function private.keep_payout_method_of_withdrawals();
