-- The audit trail, part 5: an entity's history, for auditors. Every audit row of every
-- transaction that touched the entity (its own rows, the ledger postings, escrow balances,
-- disputes, processor charges, refused calls), in chain order.
--
-- A transaction's rows share its id (metadata.transaction) and its start time (`timestamp`
-- is now()), so they are found through the index on the time: no index on the transaction
-- id (an expression on every insert's metadata) is kept up to date for this query.

/**
 * The history of one entity, e.g. ('milestone_payments', '<id>'). Security invoker: it
 * returns only what the caller may read of the audit log (auditors and system admins).
 */
create function public.audit_history(entity_type text, entity_id text)
returns setof public.payment_audit_logs
language sql
stable
security invoker
set search_path = ''
as $$
  select l.* from public.payment_audit_logs as l
  where (l.timestamp, l.metadata ->> 'transaction') in (
    select e.timestamp, e.metadata ->> 'transaction' from public.payment_audit_logs as e
    where e.entity_type = audit_history.entity_type and e.entity_id = audit_history.entity_id
  )
  order by l.seq
$$;

revoke all on function public.audit_history(text, text) from public;
grant execute on function public.audit_history(text, text) to authenticated, auditor;
