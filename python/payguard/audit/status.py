"""The audit log's sealing backlog, as private.audit_seal_status() reports it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from payguard.audit.sealer import drawn_seq
from payguard.db import connect


@dataclass(frozen=True)
class SealStatus:
    unsealed_rows: int
    oldest_unsealed_at: datetime | None
    sealed_through: int
    last_sealed_at: datetime | None
    alert_after_seconds: int
    # "name: schedule command" of each pg_cron job that seals; empty without pg_cron.
    scheduled_jobs: tuple[str, ...]
    checked_at: datetime

    @property
    def oldest_unsealed_seconds(self) -> float | None:
        if self.oldest_unsealed_at is None:
            return None
        return max(0.0, (self.checked_at - self.oldest_unsealed_at).total_seconds())

    @property
    def overdue(self) -> bool:
        """True when the oldest unsealed row is older than the alert threshold."""
        age = self.oldest_unsealed_seconds
        return age is not None and age > self.alert_after_seconds

    def as_dict(self) -> dict[str, object]:
        return {
            "unsealed_rows": self.unsealed_rows,
            "oldest_unsealed_at": _iso(self.oldest_unsealed_at),
            "oldest_unsealed_seconds": (
                None
                if self.oldest_unsealed_seconds is None
                else round(self.oldest_unsealed_seconds, 3)
            ),
            "sealed_through": self.sealed_through,
            "last_sealed_at": _iso(self.last_sealed_at),
            "alert_after_seconds": self.alert_after_seconds,
            "overdue": self.overdue,
            "scheduled_jobs": list(self.scheduled_jobs),
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def seal_status(url: str) -> SealStatus:
    with connect(url) as conn:
        row = conn.execute(
            "select s.unsealed_rows, s.oldest_unsealed_at, s.sealed_through, s.last_sealed_at, "
            "s.alert_after_seconds, s.scheduled_jobs, clock_timestamp() "
            "from private.audit_seal_status() as s"
        ).fetchone()
    assert row is not None
    return SealStatus(
        unsealed_rows=int(row[0]),
        oldest_unsealed_at=row[1],
        sealed_through=int(row[2]),
        last_sealed_at=row[3],
        alert_after_seconds=int(row[4]),
        scheduled_jobs=tuple(row[5] or ()),
        checked_at=row[6],
    )


def wait_until_sealed(url: str, timeout: float, interval: float = 1.0) -> tuple[SealStatus, bool]:
    """Wait, up to `timeout` seconds, until every row written before the call is sealed by
    whatever seals the log (pg_cron's job, a running `audit seal --follow`): this seals
    nothing itself. Returns the last status and whether they were sealed."""
    with connect(url) as conn:
        target = drawn_seq(conn)
    deadline = time.monotonic() + timeout
    while True:
        found = seal_status(url)
        if found.sealed_through >= target:
            return found, True
        if time.monotonic() >= deadline:
            return found, False
        time.sleep(interval)
