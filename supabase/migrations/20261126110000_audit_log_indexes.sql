-- The audit log's indexes are paid for by every audited row, eleven of them per release.
-- The log keeps the indexes its own queries use:
--   * the primary key, and seq: the chain's order, which the sealer and verify read by;
--   * (entity_type, entity_id): where an entity's history starts;
--   * the time: an entity's history finds the other rows of the transactions that touched it
--     by their start time, and retention purges by age.
-- The index on user_id goes: no query of the audit trail selects by it, and it took a
-- b-tree entry per row at a random place. A search of one user's actions filters a time
-- range, which the time index narrows.
-- (A block-range index on the time instead of the b-tree made no measurable difference to
-- the writers, and its summaries would lag behind a log that grows this fast.)

drop index public.payment_audit_logs_user_id_idx;
