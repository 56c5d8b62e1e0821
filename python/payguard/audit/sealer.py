"""Run the audit log's sealer, private.seal_audit_log(), from outside the database.

Each call either notes a fence (the highest seq drawn, and the transactions running) or, once
every transaction of the previous fence has ended, seals the rows up to it. So sealing
everything committed before a moment takes two calls at least; a long transaction that was
running at that moment holds sealing back until it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from payguard.db import connect
from payguard.errors import PayguardError


@dataclass
class SealRun:
    sealed: int
    through_seq: int
    seconds: float


def _head(conn: psycopg.Connection) -> int:
    row = conn.execute("select through_seq from private.audit_chain_head()").fetchone()
    return int(row[0]) if row else 0


def drawn_seq(conn: psycopg.Connection) -> int:
    """The highest seq an audit row has drawn so far (0 for none)."""
    row = conn.execute(
        "select case when is_called then last_value else 0 end from private.audit_log_seq"
    ).fetchone()
    return int(row[0]) if row else 0


def seal_now(url: str, *, timeout: float = 30.0, interval: float = 0.05) -> SealRun:
    """Seal every audit row committed before this call, waiting for the transactions that
    were running then to end; gives up after `timeout` seconds without progress."""
    started = progress = time.perf_counter()
    sealed = 0
    with connect(url) as conn:
        target = drawn_seq(conn)
        while True:
            got = conn.execute("select private.seal_audit_log()").fetchone()
            if got and got[0]:
                sealed += int(got[0])
                progress = time.perf_counter()
            head = _head(conn)
            if head >= target:
                return SealRun(sealed, head, time.perf_counter() - started)
            if time.perf_counter() - progress > timeout:
                raise PayguardError(
                    f"sealed through seq {head} of {target} in {timeout:.0f} s: a transaction "
                    "that was running is still open (see pg_stat_activity)"
                )
            time.sleep(interval)


# Rows sealed per call at most (private.seal_audit_log's default): a call that seals this
# many is followed at once by the next.
BATCH = 100_000


def follow(
    url: str,
    *,
    interval: float = 0.25,
    until: Callable[[], bool] = lambda: False,
    report: Callable[[SealRun], None] | None = None,
) -> int:
    """Seal continuously, one call every `interval` seconds, until `until()` is true (or
    forever). Each call seals what the previous one fenced, so a row waits between one and
    two intervals (plus the longest transaction then running); fewer, larger batches cost
    less per row than sealing as fast as rows come. Returns the rows sealed."""
    total = 0
    with connect(url) as conn:
        while not until():
            started = time.perf_counter()
            got = conn.execute("select private.seal_audit_log()").fetchone()
            sealed = int(got[0]) if got else 0
            total += sealed
            elapsed = time.perf_counter() - started
            if sealed and report is not None:
                report(SealRun(sealed, _head(conn), elapsed))
            if sealed < BATCH:
                time.sleep(max(0.0, interval - elapsed))
    return total
