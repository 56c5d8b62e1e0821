"""`payguard reconcile`: does the money add up?

Read-only checks, each a query that lists what is wrong:
- every ledger transfer balances, bucket by bucket, and all accounts sum to zero;
- every transfer's accounts hold its currency;
- every limited account's entries are numbered 1, 2, ... and carry its running balances (so
  its latest entry holds the sums of its entries), the others' carry none; none is
  overdrawn;
- every pending transfer is resolved at most once;
- every escrow account's cached balance equals its ledger balance;
- every funded milestone payment has its processor transaction (succeeded, same amount and
  currency) and its funding posted to escrow once, for its amount;
- no inconsistency with the processor is open (a charge the database refused or could not
  record, a chargeback it refused), and no webhook event is refused or failed unless a
  resolved inconsistency settles it (public.settle_webhook_event, or the resolution of the
  one its refusal opened): each is listed with the processor's id, for operations;
- every refund payguard owes (a dispute resolved as a refund or a split, a recovered charge)
  has been confirmed by the processor's charge.refunded: one due or sent is listed.
"""

from __future__ import annotations

from dataclasses import dataclass

from payguard.db import connect

CHECKS: tuple[tuple[str, str], ...] = (
    (
        "unbalanced transfer",
        "select e.transfer_id::text || ' (' || e.bucket || ')' from private.ledger_entries as e "
        "group by e.transfer_id, e.bucket "
        "having sum(e.amount) filter (where e.side = 'debit') "
        "is distinct from sum(e.amount) filter (where e.side = 'credit')",
    ),
    (
        "money not conserved",
        "select 'all accounts sum to ' || total::text from (select coalesce(sum("
        "credits_posted - debits_posted + credits_pending - debits_pending), 0) as total "
        "from private.ledger_balances) as t where total <> 0",
    ),
    (
        "transfer in a currency its accounts do not hold",
        "select t.id::text from private.ledger_transfers as t "
        "join private.ledger_accounts as d on d.id = t.debit_account_id "
        "join private.ledger_accounts as c on c.id = t.credit_account_id "
        "where d.currency <> t.currency or c.currency <> t.currency",
    ),
    (
        "entry out of line with its account's running balance",
        "select r.id::text || ' (' || r.kind || ' ' || r.account_id::text || ')' from ("
        "select x.*, a.kind, a.debits_must_not_exceed_credits as limited, "
        "row_number() over running as number, "
        "(sum(case when x.side = 'debit' and x.bucket = 'pending' then x.amount else 0 end) "
        "over running)::bigint as debits_pending, "
        "(sum(case when x.side = 'debit' and x.bucket = 'posted' then x.amount else 0 end) "
        "over running)::bigint as debits_posted, "
        "(sum(case when x.side = 'credit' and x.bucket = 'pending' then x.amount else 0 end) "
        "over running)::bigint as credits_pending, "
        "(sum(case when x.side = 'credit' and x.bucket = 'posted' then x.amount else 0 end) "
        "over running)::bigint as credits_posted "
        "from private.ledger_entries as x "
        "join private.ledger_accounts as a on a.id = x.account_id "
        "window running as (partition by x.account_id order by x.account_version, x.id)"
        ") as r where case when r.limited then (r.account_version, r.account_debits_pending, "
        "r.account_debits_posted, r.account_credits_pending, r.account_credits_posted) "
        "is distinct from (r.number, r.debits_pending, r.debits_posted, r.credits_pending, "
        "r.credits_posted) else num_nonnulls(r.account_version, r.account_debits_pending, "
        "r.account_debits_posted, r.account_credits_pending, r.account_credits_posted) > 0 end",
    ),
    (
        "overdrawn account",
        "select b.account_id::text || ' (' || b.kind || ')' from private.ledger_balances as b "
        "join private.ledger_accounts as a on a.id = b.account_id "
        "where a.debits_must_not_exceed_credits "
        "and b.debits_pending + b.debits_posted > b.credits_posted",
    ),
    (
        "pending transfer resolved more than once",
        "select t.pending_id::text from private.ledger_transfers as t "
        "where t.pending_id is not null group by t.pending_id having count(*) > 1",
    ),
    (
        "escrow balance differs from the ledger",
        "select e.id::text || ': cached ' || e.balance_minor::text || ', ledger ' "
        "|| coalesce(b.credits_posted - b.debits_posted, 0)::text "
        "from public.escrow_accounts as e "
        "left join private.ledger_accounts as a on a.escrow_account_id = e.id "
        "left join private.ledger_balances as b on b.account_id = a.id "
        "where e.balance_minor is distinct from coalesce(b.credits_posted - b.debits_posted, 0)",
    ),
    (
        "funded milestone payment without its processor transaction",
        "select mp.id::text from public.milestone_payments as mp "
        "where mp.status in ('funded', 'disputed', 'released', 'refunded', 'split') "
        "and not exists ("
        "select from public.payment_transactions as t "
        "where t.processor_transaction_id = mp.processor_payment_intent_id "
        "and t.status = 'succeeded' and t.amount_minor = mp.amount_minor "
        "and t.currency = mp.currency)",
    ),
    (
        "funded milestone payment whose funding is not posted once, for its amount",
        "select mp.id::text from public.milestone_payments as mp "
        "where mp.status in ('funded', 'disputed', 'released', 'refunded', 'split') and ("
        "select count(*) filter (where t.amount = mp.amount_minor) || '/' || count(*) "
        "from private.ledger_transfers as t where t.reference_type = 'milestone_payment' "
        "and t.reference_id = mp.id and t.code = 'milestone_funding') <> '1/1'",
    ),
    (
        "open processor inconsistency",
        "select i.kind || ' ' || i.processor_object_id "
        "|| coalesce(' of milestone payment ' || i.milestone_payment_id::text, '') "
        "|| coalesce(', ' || i.amount_minor::text || ' ' || i.currency, '') "
        "|| coalesce(', to ' || i.recovery, '') || coalesce(' (event ' || i.webhook_event_id "
        "|| ')', '') || coalesce(': ' || i.detail, '') "
        "from public.processor_inconsistencies as i where i.resolution is null "
        "order by i.created_at, i.id",
    ),
    (
        "webhook event refused or failed",
        "select e.id || ' ' || e.type || ' ' || e.status::text "
        "|| coalesce(' of ' || (e.payload -> 'data' -> 'object' ->> 'id'), '') "
        "|| coalesce(' (' || e.error_code || ')', '') || coalesce(': ' || e.error_message, '') "
        "from public.webhook_events as e where e.status in ('refused', 'failed') "
        "and not exists (select from public.processor_inconsistencies as i "
        "where i.webhook_event_id = e.id and i.resolution is not null) "
        "order by e.received_at, e.id",
    ),
    (
        "refund owed and not confirmed",
        "select o.payment_intent_id || ': ' || o.amount_minor::text || ' ' || o.currency "
        "|| coalesce(' of milestone payment ' || o.milestone_payment_id::text, '') "
        "|| coalesce(' (processor inconsistency ' || o.processor_inconsistency_id::text "
        "|| ')', '') "
        "|| ', ' || o.status || coalesce(' as ' || o.processor_refund_id, '') "
        "|| coalesce(', last refused: ' || o.last_failure_code, '') "
        "|| ', key ' || o.idempotency_key "
        "from private.refund_obligations as o where o.status in ('due', 'sent') "
        "order by o.created_at, o.id",
    ),
)


# The checks of the border with the processor read tables (and a webhook status) that a
# database deployed before those migrations does not have, and where nothing can be found.
REQUIRES: dict[str, str] = {
    "open processor inconsistency": "public.processor_inconsistencies",
    "webhook event refused or failed": "public.processor_inconsistencies",
    "refund owed and not confirmed": "private.refund_obligations",
}


@dataclass(frozen=True)
class Difference:
    check: str
    subject: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}"


def reconcile(url: str) -> list[Difference]:
    """Every difference found; empty when the money adds up."""
    found: list[Difference] = []
    with connect(url) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        for name, query in CHECKS:
            if name in REQUIRES:
                row = conn.execute("select to_regclass(%s)", (REQUIRES[name],)).fetchone()
                if row is None or row[0] is None:
                    continue
            found += [Difference(name, str(subject)) for (subject,) in conn.execute(query)]
    return found
