-- Running balances on the ledger's entries: a limited account's balances are where its latest
-- entry left them, no longer counters on its row.
--
-- Wallets and escrow accounts kept their four totals (debits and credits, pending and
-- posted) on their rows, and every transfer updated them: an edit in place of a financial
-- record, and with the audit trail one more audited statement, with an old and a new row, for
-- each account (a release touches the escrow's account and the payee's wallet). Now each
-- entry of a limited account carries the account's version (its entries numbered 1, 2, ...)
-- and the account's totals after it, as pgledger keeps them. A transfer changes no row of
-- the ledger any more, it only adds rows (the escrow's cached balance in
-- public.escrow_accounts still follows).
--
-- What does not change: a transfer locks its limited accounts in id order and checks the
-- limit under the lock, then reads their totals (from their latest entries, found through
-- the (account, version) index). Reading them after the lock is only right with a snapshot
-- taken after it, as READ COMMITTED takes one per statement: a transaction at REPEATABLE
-- READ or SERIALIZABLE would keep its first snapshot and read totals that a transfer it
-- waited for has since changed, so money moves only at READ COMMITTED (PostgREST's level),
-- and (account, version) is unique, so an account's history cannot fork whatever happens.
-- Accounts without a limit are neither locked nor numbered; their balances are the sums of
-- their entries, as before.

-- The ledger's three tables, all at once or not at all, before anything changes: a transfer
-- in flight under the previous functions holds some of them and will ask for others (in an
-- order that depends on the operation), so waiting for one while holding another could
-- deadlock with it. Each attempt takes none if it cannot take all; it is tried again every
-- 50 ms for 30 s, and the deploy then fails, changing nothing, to be run again when fewer
-- payments are moving. (In a DO block: the Supabase CLI does not send a migration inside a
-- transaction block, and a bare LOCK TABLE is refused outside one.)
do $$
declare
  attempts integer := 0;
begin
  loop
    begin
      lock table private.ledger_accounts, private.ledger_transfers, private.ledger_entries
      in access exclusive mode nowait;
      exit;
    exception when lock_not_available then
      attempts := attempts + 1;
      if attempts >= 600 then
        raise exception 'the ledger stayed in use for 30 s: no moment without a transfer in flight'
        using errcode = '55P03',
        hint = 'deploy again when fewer payments are moving; nothing was changed';
      end if;
      perform pg_sleep(0.05);
    end;
  end loop;
end
$$;

create type private.ledger_change as (
  transfer_id uuid,
  account_id uuid,
  side text,
  bucket text,
  amount bigint
);

comment on type private.ledger_change is
'What a transfer does to one account''s balances: a signed amount of its debits or credits, '
'pending or posted (an entry before it is recorded).';

alter table private.ledger_entries
add column account_version bigint,
add column account_debits_pending bigint,
add column account_debits_posted bigint,
add column account_credits_pending bigint,
add column account_credits_posted bigint;

comment on column private.ledger_entries.account_version is
'For an account with a limit: this entry''s number among the account''s entries (1, 2, ...). '
'Null for the others.';
comment on column private.ledger_entries.account_debits_pending is
'For an account with a limit: its pending debits after this entry. Null for the others.';
comment on column private.ledger_entries.account_debits_posted is
'For an account with a limit: its posted debits after this entry. Null for the others.';
comment on column private.ledger_entries.account_credits_pending is
'For an account with a limit: its pending credits after this entry. Null for the others.';
comment on column private.ledger_entries.account_credits_posted is
'For an account with a limit: its posted credits after this entry. Null for the others.';

-- The entries already recorded get their numbers and totals, in the order they were made
-- (under the account's lock, so in id order). Filling in the new columns is the only change
-- ever made to an entry, here, once; the audit trail records it as it records any update,
-- one row per entry with its old and new values.
alter table private.ledger_entries disable trigger refuse_ledger_rewrite;
create trigger audit_trail_running_balances
after update on private.ledger_entries
referencing old table as removed new table as added
for each statement execute function private.capture_audit_updates('id');

update private.ledger_entries as e
set
  account_version = r.account_version,
  account_debits_pending = r.debits_pending,
  account_debits_posted = r.debits_posted,
  account_credits_pending = r.credits_pending,
  account_credits_posted = r.credits_posted
from (
  select
    x.id,
    row_number() over running as account_version,
    sum(case when x.side = 'debit' and x.bucket = 'pending' then x.amount else 0 end)
      over running as debits_pending,
    sum(case when x.side = 'debit' and x.bucket = 'posted' then x.amount else 0 end)
      over running as debits_posted,
    sum(case when x.side = 'credit' and x.bucket = 'pending' then x.amount else 0 end)
      over running as credits_pending,
    sum(case when x.side = 'credit' and x.bucket = 'posted' then x.amount else 0 end)
      over running as credits_posted
  from private.ledger_entries as x
  inner join private.ledger_accounts as a on x.account_id = a.id
  where a.debits_must_not_exceed_credits
  window running as (partition by x.account_id order by x.id)
) as r
where e.id = r.id;

drop trigger audit_trail_running_balances on private.ledger_entries;
alter table private.ledger_entries enable trigger refuse_ledger_rewrite;

-- The totals the rows held must be where the entries now leave them; otherwise stop here.
do $$
declare
  differing record;
begin
  select a.id, a.kind into differing
  from private.ledger_accounts as a
  left join lateral (
    select
      e.account_debits_pending, e.account_debits_posted, e.account_credits_pending,
      e.account_credits_posted
    from private.ledger_entries as e
    where e.account_id = a.id and e.account_version is not null
    order by e.account_version desc
    limit 1
  ) as latest on true
  where a.debits_must_not_exceed_credits
    and (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
    is distinct from (
      coalesce(latest.account_debits_pending, 0), coalesce(latest.account_debits_posted, 0),
      coalesce(latest.account_credits_pending, 0), coalesce(latest.account_credits_posted, 0)
    )
  limit 1;
  if found then
    raise exception '% account %: the balances on its row differ from the sums of its entries',
    differing.kind, differing.id
    using errcode = 'P0001',
    hint = 'compare the row with private.ledger_balances: its entries are the record; correct '
    'the row to match them (or post the missing transfer) before deploying this migration';
  end if;
end
$$;

alter table private.ledger_entries
add constraint ledger_entries_account_totals_together check (
  (account_version is null) = (account_debits_pending is null)
  and (account_version is null) = (account_debits_posted is null)
  and (account_version is null) = (account_credits_pending is null)
  and (account_version is null) = (account_credits_posted is null)
),
add constraint ledger_entries_account_totals_valid check (
  account_version >= 1
  and account_debits_pending >= 0 and account_debits_posted >= 0
  and account_credits_pending >= 0 and account_credits_posted >= 0
),
-- Checked for every new entry. Not for those above: their limit was checked per call, on
-- the call's sum, and a call's own order is not recorded.
add constraint ledger_entries_account_within_limit check (
  account_debits_pending + account_debits_posted <= account_credits_posted
) not valid;

-- One history per account; it also finds an account's entries, as the index it replaces did.
create unique index ledger_entries_account_version_idx
on private.ledger_entries (account_id, account_version);
drop index private.ledger_entries_account_id_idx;

alter table private.ledger_accounts
drop constraint ledger_accounts_within_limit,
drop column debits_pending,
drop column debits_posted,
drop column credits_pending,
drop column credits_posted;

comment on table private.ledger_accounts is
'Ledger accounts. They hold no balances: see private.ledger_limited_balances (accounts with '
'a limit, from their latest entries) and private.ledger_balances (every account, summed).';

/**
 * The balances of the accounts with a limit (wallets, escrow), where their latest entries
 * left them; zero for an account without entries. `account_version` is the latest entry's
 * number.
 */
create view private.ledger_limited_balances as
select
  a.id as account_id,
  a.kind,
  a.currency,
  a.user_id,
  a.escrow_account_id,
  coalesce(latest.account_version, 0) as account_version,
  coalesce(latest.account_debits_pending, 0) as debits_pending,
  coalesce(latest.account_debits_posted, 0) as debits_posted,
  coalesce(latest.account_credits_pending, 0) as credits_pending,
  coalesce(latest.account_credits_posted, 0) as credits_posted
from private.ledger_accounts as a
left join lateral (
  select
    e.account_version,
    e.account_debits_pending,
    e.account_debits_posted,
    e.account_credits_pending,
    e.account_credits_posted
  from private.ledger_entries as e
  where e.account_id = a.id and e.account_version is not null
  order by e.account_version desc
  limit 1
) as latest on true
where a.debits_must_not_exceed_credits;

/**
 * Record `changes` as entries, all or none, at read committed isolation only (see the top of
 * this file). The limited accounts among them are locked in id order (so concurrent
 * transfers never deadlock); their entries are numbered on from each account's latest and
 * carry its totals on, what raises the room under the limit first (credits, resolving
 * debits), so that an account's last entry is its lowest point, and are recorded in that
 * order; an overdraft is refused naming the account (and the entries' check constraint would
 * refuse it again). Accounts without a limit are neither locked nor numbered. The escrow
 * accounts' cached balances follow. Set-based, with no subtransaction.
 */
create function private.record_entries(changes private.ledger_change[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  limited uuid [];
  placed private.ledger_entries [];
  overdrawn uuid;
begin
  -- (read uncommitted is read committed in PostgreSQL)
  if current_setting('transaction_isolation') not in ('read committed', 'read uncommitted') then
    raise exception 'money moves only at read committed isolation, not %',
    current_setting('transaction_isolation')
    using errcode = '0A000',
    hint = 'a transfer reads the balances its lock protects with a snapshot taken after the '
    'lock; run it at read committed, as PostgREST does';
  end if;
  -- Not FOR UPDATE: that would wait on the key-share locks that inserting a transfer's rows
  -- takes on both accounts, so that two transfers would deadlock. The accounts as an array,
  -- so that every statement below finds them by primary key.
  limited := array(
    select a.id from private.ledger_accounts as a
    where a.id = any(array(select c.account_id from unnest(changes) as c))
      and a.debits_must_not_exceed_credits
    order by a.id
    for no key update
  );
  -- A statement after the lock: its snapshot holds every entry of the transfers that held
  -- the lock before. Each account's latest entry is looked up as in
  -- private.ledger_limited_balances, for the call's accounts only (joining the view instead
  -- made a release slower).
  placed := array(
    select row(
      null, c.transfer_id, c.account_id, c.side, c.bucket, c.amount, null,
      latest.account_version + row_number() over running,
      latest.account_debits_pending + coalesce(
        sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'pending') over running, 0
      ),
      latest.account_debits_posted + coalesce(
        sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'posted') over running, 0
      ),
      latest.account_credits_pending + coalesce(
        sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'pending') over running, 0
      ),
      latest.account_credits_posted + coalesce(
        sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted') over running, 0
      )
    )::private.ledger_entries
    from unnest(changes) with ordinality as c (
      transfer_id, account_id, side, bucket, amount, position
    )
    left join lateral (
      select
        coalesce(max(e.account_version), 0) as account_version,
        coalesce(max(e.account_debits_pending), 0) as account_debits_pending,
        coalesce(max(e.account_debits_posted), 0) as account_debits_posted,
        coalesce(max(e.account_credits_pending), 0) as account_credits_pending,
        coalesce(max(e.account_credits_posted), 0) as account_credits_posted
      from (
        select
          l.account_version, l.account_debits_pending, l.account_debits_posted,
          l.account_credits_pending, l.account_credits_posted
        from private.ledger_entries as l
        where c.account_id = any(limited)
          and l.account_id = c.account_id and l.account_version is not null
        order by l.account_version desc
        limit 1
      ) as e
      -- no row (so null totals) for an account without a limit; zeros for one without entries
      having c.account_id = any(limited)
    ) as latest on true
    -- What raises (or keeps) the room under the limit first: positive credits, negative
    -- (resolving) debits; then what lowers it.
    window running as (
      partition by c.account_id
      order by (c.side = 'credit') = (c.amount > 0) desc, c.position
    )
    -- recorded in the same order, so that each account's entries have ids in version order
    order by (c.side = 'credit') = (c.amount > 0) desc, c.position
  );

  select p.account_id into overdrawn
  from unnest(placed) as p
  where p.account_debits_pending + p.account_debits_posted > p.account_credits_posted
  order by p.account_id
  limit 1;
  if found then
    raise exception '% account % would be overdrawn',
    (select a.kind from private.ledger_accounts as a where a.id = overdrawn), overdrawn
    using errcode = 'PT409', hint = 'its available balance is smaller than the amount';
  end if;

  insert into private.ledger_entries (
    transfer_id, account_id, side, bucket, amount, account_version, account_debits_pending,
    account_debits_posted, account_credits_pending, account_credits_posted
  )
  select
    p.transfer_id, p.account_id, p.side, p.bucket, p.amount, p.account_version,
    p.account_debits_pending, p.account_debits_posted, p.account_credits_pending,
    p.account_credits_posted
  from unnest(placed) as p;

  -- The cached balance users read: what an escrow holds, posted.
  update public.escrow_accounts as e
  set balance_minor = last.posted
  from (
    select distinct on (p.account_id)
      p.account_id,
      p.account_credits_posted - p.account_debits_posted as posted
    from unnest(placed) as p
    where p.account_version is not null
    order by p.account_id asc, p.account_version desc
  ) as last
  inner join private.ledger_accounts as a on last.account_id = a.id
  where a.id = any(limited)
    and a.escrow_account_id = e.id
    and e.balance_minor is distinct from last.posted;
end
$$;

/**
 * Move `amount` of `currency` from `debit_account` to `credit_account`, posted at once or
 * pending. Returns the transfer's id. As in 20261126065000_ledger.sql, its entries recorded
 * by the function above.
 */
create or replace function private.ledger_transfer(
  transfer_code text,
  debit_account uuid,
  credit_account uuid,
  amount bigint,
  transfer_currency char(3),
  pending boolean default false,
  reference_type text default null,
  reference_id uuid default null
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  transfer_id uuid := gen_random_uuid();
  bucket text := case when pending then 'pending' else 'posted' end;
  mismatched int;
begin
  if amount is null or amount <= 0 then
    raise exception 'a transfer moves a positive amount, not %', amount using errcode = 'PT422';
  end if;
  select count(*) into mismatched from private.ledger_accounts as a
  where a.id in (debit_account, credit_account) and a.currency = transfer_currency;
  if mismatched <> 2 then
    raise exception 'accounts % and % must both exist and hold %',
    debit_account, credit_account, transfer_currency
    using errcode = 'PT422';
  end if;
  insert into private.ledger_transfers (
    id, kind, code, debit_account_id, credit_account_id, amount, currency,
    reference_type, reference_id
  )
  values (
    transfer_id,
    case when pending then 'pending' else 'single_phase' end::private.ledger_transfer_kind,
    transfer_code, debit_account, credit_account, amount, transfer_currency,
    reference_type, reference_id
  );
  perform private.record_entries(array[
    row(transfer_id, debit_account, 'debit', bucket, amount),
    row(transfer_id, credit_account, 'credit', bucket, amount)
  ]::private.ledger_change[]);
  return transfer_id;
end
$$;

/**
 * Post (`post` true) or void a pending transfer, once: a second attempt, concurrent or not,
 * is refused. Returns the resolving transfer's id. As in 20261126065000_ledger.sql.
 */
create or replace function private.ledger_resolve(pending_transfer uuid, post boolean)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  pending_row private.ledger_transfers;
  transfer_id uuid := gen_random_uuid();
begin
  select * into pending_row from private.ledger_transfers as t where t.id = pending_transfer;
  if not found or pending_row.kind <> 'pending' then
    raise exception 'no pending transfer %', pending_transfer using errcode = 'PT404';
  end if;
  begin
    insert into private.ledger_transfers (
      id, kind, code, debit_account_id, credit_account_id, amount, currency, pending_id,
      reference_type, reference_id
    )
    values (
      transfer_id,
      case when post then 'post_pending' else 'void_pending' end::private.ledger_transfer_kind,
      pending_row.code, pending_row.debit_account_id, pending_row.credit_account_id,
      pending_row.amount, pending_row.currency, pending_row.id,
      pending_row.reference_type, pending_row.reference_id
    );
  exception when unique_violation then
    raise exception 'pending transfer % is already resolved', pending_transfer
    using errcode = 'PT409';
  end;
  perform private.record_entries(
    case when post then array[
      row(transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.debit_account_id, 'debit', 'posted', pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'posted', pending_row.amount)
    ]::private.ledger_change []
    else array[
      row(transfer_id, pending_row.debit_account_id, 'debit', 'pending', -pending_row.amount),
      row(transfer_id, pending_row.credit_account_id, 'credit', 'pending', -pending_row.amount)
    ]::private.ledger_change []
    end
  );
  return transfer_id;
end
$$;

/**
 * Post `moves` (from private.ledger_move) together: all or none. Each must move a positive
 * amount between two accounts of its currency. As in 20261126080800_ledger_linked_transfers.sql.
 */
create or replace function private.ledger_transfers(moves private.ledger_transfers[]) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  bad private.ledger_transfers;
begin
  select m.* into bad from unnest(moves) as m
  where m.amount is null or m.amount <= 0
  limit 1;
  if found then
    raise exception 'a transfer moves a positive amount, not %', bad.amount using errcode = 'PT422';
  end if;
  select m.* into bad from unnest(moves) as m
  where (
    select count(*) from private.ledger_accounts as a
    where a.id in (m.debit_account_id, m.credit_account_id) and a.currency = m.currency
  ) <> 2
  limit 1;
  if found then
    raise exception 'accounts % and % must both exist and hold %',
    bad.debit_account_id, bad.credit_account_id, bad.currency
    using errcode = 'PT422';
  end if;
  insert into private.ledger_transfers (
    id, kind, code, debit_account_id, credit_account_id, amount, currency,
    reference_type, reference_id
  )
  select
    m.id, 'single_phase', m.code, m.debit_account_id, m.credit_account_id, m.amount,
    m.currency, m.reference_type, m.reference_id
  from unnest(moves) as m;
  perform private.record_entries(array(
    select row(m.id, side.account_id, side.side, 'posted', m.amount)::private.ledger_change
    from unnest(moves) as m
    cross join lateral (
      values (m.debit_account_id, 'debit'), (m.credit_account_id, 'credit')
    ) as side (account_id, side)
  ));
end
$$;

drop function private.record_entries(private.ledger_entries[]);
drop function private.apply_to_limited_accounts(private.ledger_entries[]);

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

/**
 * The requesting user's wallets: posted balance, what is reserved by pending withdrawals,
 * and what they may withdraw now. Nobody else's.
 */
create or replace function private.requester_wallets() returns table (
  currency char(3), posted_minor bigint, reserved_minor bigint, withdrawable_minor bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select
    b.currency,
    b.credits_posted - b.debits_posted,
    b.debits_pending,
    private.withdrawable(b.user_id, b.currency)
  from private.ledger_limited_balances as b
  where b.kind = 'user_wallet' and b.user_id = (select auth.uid())
  order by b.currency
$$;

revoke all on function private.record_entries(private.ledger_change[]) from public;
