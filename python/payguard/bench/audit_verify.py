"""Audit verify speed: `payguard audit verify` over a log of (at least) a million rows.

The log is grown from the rows that the release benchmark wrote (real shapes and sizes:
ledger postings, balance updates, payments), copied until it holds `rows`, then sealed,
then verified. Reported: the rows verified per second, and the sealing rate on the way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from payguard.audit.chain import verify
from payguard.audit.sealer import seal_now
from payguard.db import connect
from payguard.errors import PayguardError

COLUMNS = (
    "operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent, "
    "old_values, new_values, success, error_message, metadata"
)


@dataclass(frozen=True)
class VerifySpeed:
    rows: int
    grow_seconds: float
    seal_seconds: float
    verify_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.verify_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "grow_seconds": round(self.grow_seconds, 1),
            "seal_seconds": round(self.seal_seconds, 1),
            "sealed_rows_per_second": round(self.rows / self.seal_seconds),
            "verify_seconds": round(self.verify_seconds, 2),
            "verified_rows_per_second": round(self.rows_per_second),
        }


def run(owner_url: str, rows: int) -> VerifySpeed:
    started = time.perf_counter()
    with connect(owner_url) as conn:
        while True:
            found = conn.execute("select count(*) from public.payment_audit_logs").fetchone()
            have = int(found[0]) if found else 0
            if have >= rows:
                break
            if have == 0:
                raise PayguardError("the audit log is empty: run the release benchmark first")
            conn.execute(
                f"insert into public.payment_audit_logs ({COLUMNS}) "
                f"select {COLUMNS} from public.payment_audit_logs order by seq limit %s",
                (min(have, rows - have),),
            )
        conn.execute("vacuum analyze public.payment_audit_logs")
    grown = time.perf_counter()
    seal_now(owner_url, timeout=120)
    with connect(owner_url) as conn:
        conn.execute("vacuum analyze public.payment_audit_logs")
    sealed = time.perf_counter()
    verdict = verify(owner_url)
    if not verdict.ok:
        raise PayguardError(f"the benchmark's log does not verify: {verdict.reason}")
    return VerifySpeed(verdict.checked, grown - started, sealed - grown, verdict.seconds)
