-- "One live payment per milestone" and "one open dispute per payment", without partial
-- indexes.
--
-- Both rules were unique partial indexes (`where status not in ('canceled', 'refunded')`,
-- `where status = 'open'`). The update policies of these tables test the status too, and
-- when a query's conditions imply a partial index's predicate, the planner costs a full scan
-- of that index as if it returned one row: a party's `update … where id = $1` on
-- milestone_payments scanned every live payment instead of reading one by its primary key
-- (measured: 12,000 rows filtered per release, a cost that grew with the table). The same
-- rules as full unique indexes on an expression, with NULLS NOT DISTINCT: every live row
-- of a milestone (or open dispute of a payment) has the same key, (milestone, null), so a
-- second one conflicts; a row that is no longer live is keyed by its own id.

create unique index milestone_payments_one_live_per_milestone_key
on public.milestone_payments (
  milestone_id, (case when status in ('canceled', 'refunded') then id end)
) nulls not distinct;
drop index public.milestone_payments_one_live_per_milestone_idx;

create unique index disputes_one_open_per_payment_key
on public.disputes (
  milestone_payment_id, (case when status <> 'open' then id end)
) nulls not distinct;
drop index public.disputes_one_open_per_payment_idx;
