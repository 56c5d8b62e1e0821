"""`payguard stripe recover`: decide the recovery of the charges the database refused or did
not record, as the refunds function does before it sends the refunds.

Each open charge_refused / charge_unrecorded inconsistency whose recovery is undecided
(`public.inconsistencies_to_recover()`) is recovered with
`public.recover_processor_inconsistency`, as `payment_service`, one transaction each: the
payment is funded with its charge while it is still fundable, else the charge is owed back to
its payer (a refund obligation, recorded in that transaction). The refunds owed are then listed
(`public.refunds_to_send()`): the refunds function sends them to Stripe under their keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from payguard.db import Connection, connect

# The claims a backend service's request carries (its role), as the functions set them.
SERVICE_CLAIMS = json.dumps({"role": "payment_service"})


@dataclass(frozen=True)
class Recovery:
    inconsistency_id: str
    kind: str
    payment_intent_id: str
    recovery: str | None
    resolved: bool
    refund_idempotency_key: str | None


@dataclass(frozen=True)
class RefundDue:
    refund_obligation_id: str
    reason: str
    payment_intent_id: str
    amount_minor: int
    currency: str
    idempotency_key: str
    last_failure_code: str | None


def _as_payment_service(conn: Connection) -> None:
    conn.execute("set local role payment_service")
    conn.execute("select set_config('request.jwt.claims', %s, true)", (SERVICE_CLAIMS,))


def recover(url: str) -> tuple[list[Recovery], list[RefundDue]]:
    """Recover every charge awaiting recovery; the recoveries decided, and the refunds due."""
    recovered: list[Recovery] = []
    with connect(url) as conn:
        with conn.transaction():
            _as_payment_service(conn)
            pending = conn.execute(
                "select inconsistency_id::text, kind, payment_intent_id "
                "from public.inconsistencies_to_recover()"
            ).fetchall()
        for inconsistency_id, kind, intent in pending:
            with conn.transaction():
                _as_payment_service(conn)
                row = conn.execute(
                    "select public.recover_processor_inconsistency(%s)", (inconsistency_id,)
                ).fetchone()
            answer: dict[str, Any] = row[0] if row else {}
            recovered.append(
                Recovery(
                    str(inconsistency_id),
                    str(kind),
                    str(intent),
                    answer.get("recovery"),
                    bool(answer.get("resolved")),
                    answer.get("refund_idempotency_key")
                    if answer.get("recovery") == "refund" and not answer.get("resolved")
                    else None,
                )
            )
        with conn.transaction():
            _as_payment_service(conn)
            due = [
                RefundDue(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]), r[6])
                for r in conn.execute(
                    "select refund_obligation_id::text, reason, payment_intent_id, amount_minor, "
                    "currency, idempotency_key, last_failure_code from public.refunds_to_send()"
                )
            ]
    return recovered, due
