-- The audit log's indexes are paid for by every audited row, eleven of them per release.
-- The log keeps the indexes its own queries use:
--   * the primary key, and seq: the chain's order, which the sealer and verify read by;
--   * (entity_type, entity_id): where an entity's history starts;
--   * the time, for an entity's history (the rows of the transactions that touched it share
--     their start time) and for retention. Rows are appended in about the order of their
--     time, so a block-range index finds them in a few small ranges of pages, and costs
--     next to nothing per insert where a b-tree took an entry per row.
-- The index on user_id goes: no query of the audit trail selects by it, and it took a
-- b-tree entry per row at a random place. A search of one user's actions filters a time
-- range, which the time index narrows.

drop index public.payment_audit_logs_user_id_idx;
drop index public.payment_audit_logs_timestamp_idx;

-- 16 pages per range: a transaction's rows are found in about a dozen ranges at most, even
-- with many writers interleaving. New ranges are summarized as they fill.
create index payment_audit_logs_timestamp_idx
on public.payment_audit_logs using brin (timestamp)
with (pages_per_range = 16, autosummarize = on);
