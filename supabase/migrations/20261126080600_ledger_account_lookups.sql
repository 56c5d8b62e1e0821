-- The ledger's account updates find their accounts by primary key.
--
-- private.apply_to_limited_accounts matched accounts with `id in (select … from
-- unnest(changes))`. The planner cannot see into the array, guesses ten rows, and hashes the
-- whole of private.ledger_accounts for them: a sequential scan per transfer, which grows
-- with the number of accounts (every user wallet and every escrow). The same function, with
-- the account ids gathered into an array first and matched with `= any(…)`, reads them
-- through the primary key. Its plans are generic: a custom plan per call (which the planner
-- keeps choosing for an array of unknown length) cost more than the statements themselves.

/**
 * Lock the limited accounts among those `changes` touch, in id order (so concurrent
 * transfers never deadlock), refuse an overdraft naming the account, and add the changes
 * to their rows, whose check constraint refuses an overdraft again. Accounts without a
 * limit are neither locked nor updated. Set-based, with no subtransaction.
 */
create or replace function private.apply_to_limited_accounts(
  changes private.ledger_entries[]
) returns void
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  -- The accounts as an array, so that every statement below finds them by primary key.
  touched uuid [] := array(select distinct c.account_id from unnest(changes) as c);
  overdrawn record;
begin
  -- not FOR UPDATE: that would wait on the key-share locks that inserting a transfer's rows
  -- takes on both accounts, and two transfers would deadlock
  perform 1 from private.ledger_accounts as a
  where a.id = any(touched)
    and a.debits_must_not_exceed_credits
  order by a.id
  for no key update;

  select a.kind, a.id into overdrawn
  from private.ledger_accounts as a
  join (
    select
      c.account_id,
      coalesce(sum(c.amount) filter (where c.side = 'debit'), 0) as debits,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted'), 0)
      as credits_posted
    from unnest(changes) as c
    group by c.account_id
  ) as change on a.id = change.account_id
  where a.id = any(touched)
    and a.debits_must_not_exceed_credits
    and a.debits_pending + a.debits_posted + change.debits
    > a.credits_posted + change.credits_posted
  order by a.id
  limit 1;
  if found then
    raise exception '% account % would be overdrawn', overdrawn.kind, overdrawn.id
    using errcode = 'PT409', hint = 'its available balance is smaller than the amount';
  end if;

  update private.ledger_accounts as a
  set
    debits_pending = a.debits_pending + change.debits_pending,
    debits_posted = a.debits_posted + change.debits_posted,
    credits_pending = a.credits_pending + change.credits_pending,
    credits_posted = a.credits_posted + change.credits_posted
  from (
    select
      c.account_id,
      coalesce(sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'pending'), 0)
      as debits_pending,
      coalesce(sum(c.amount) filter (where c.side = 'debit' and c.bucket = 'posted'), 0)
      as debits_posted,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'pending'), 0)
      as credits_pending,
      coalesce(sum(c.amount) filter (where c.side = 'credit' and c.bucket = 'posted'), 0)
      as credits_posted
    from unnest(changes) as c
    group by c.account_id
  ) as change
  where a.id = change.account_id and a.id = any(touched) and a.debits_must_not_exceed_credits;

  -- The cached balance users read: what an escrow holds, posted.
  update public.escrow_accounts as e
  set balance_minor = a.credits_posted - a.debits_posted
  from private.ledger_accounts as a
  where a.escrow_account_id = e.id
    and a.id = any(touched)
    and e.balance_minor is distinct from a.credits_posted - a.debits_posted;
end
$$;
