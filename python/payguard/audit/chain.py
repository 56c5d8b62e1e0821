"""Verify the audit log's hash chain, independently of the database's own functions.

Every sealed row of public.payment_audit_logs carries
    row_hash = sha256(prev_hash || canonical serialization of the row)
and prev_hash is the row_hash of the sealed row before it (32 zero bytes at the start, or
the hash recorded by the last retention purge). private.audit_seals records, for each
sealing, the seq the chain was sealed through, the head hash there, and the seqs that hold
no row (their transactions rolled back). From these, verify names the first seq at which
the log departs from what was sealed:

* a row whose contents changed         -> its seq (its hash no longer matches);
* a row deleted                        -> its seq (a seq that is neither present nor skipped);
* a row inserted                       -> its seq (it holds a skipped seq, sits inside the
                                          sealed range unsealed, or breaks the links);
* rows swapped or renumbered           -> the first seq that moved;
* the tail truncated                   -> the first seq removed (the head record says how far
                                          the chain was sealed);
* a recorded head or an anchor not matched.

The canonical serialization is computed here by a query of our own, from built-in functions
only (search_path = pg_catalog), not by calling the database's private.audit_row_canonical,
which whoever changed the rows could also have changed.
"""

from __future__ import annotations

import bisect
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from payguard.db import connect
from payguard.errors import PayguardError

ZERO_HASH = bytes(32)

# The serialization private.audit_row_canonical defines, jsonb_build_array(seq, id, ...)::text,
# written out as that JSON text: each value quoted by to_json (JSON columns as their text),
# null as null.
# The bytes are the same (a test compares the two on every row of a log, escapes and nulls
# included). Building the jsonb array copied every JSON column into it first: about a tenth
# of verify's time on the server.
CANONICAL = (
    "pg_catalog.concat('[', coalesce(l.seq::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.id)::pg_catalog.text, 'null'), ', ',"
    " coalesce((extract(epoch from l.timestamp))::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.operation)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.entity_type)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.entity_id)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.user_id)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.user_role)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.ip_address)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.user_agent)::pg_catalog.text, 'null'), ', ',"
    " coalesce(l.old_values::pg_catalog.text, 'null'), ', ',"
    " coalesce(l.new_values::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.success)::pg_catalog.text, 'null'), ', ',"
    " coalesce(pg_catalog.to_json(l.error_message)::pg_catalog.text, 'null'), ', ',"
    " coalesce(l.metadata::pg_catalog.text, 'null'), ']')"
)

# Each row, with whether its row_hash is the hash recomputed from its contents (null for an
# unsealed row).
ROWS = (
    "select l.seq, l.prev_hash, l.row_hash, l.row_hash = pg_catalog.sha256("
    "coalesce(l.prev_hash, ''::pg_catalog.bytea) || "
    f"pg_catalog.convert_to({CANONICAL}, 'UTF8')) "
    "from public.payment_audit_logs as l where l.seq > %s and l.seq <= %s order by l.seq"
)


@dataclass(frozen=True)
class Anchor:
    """A chain head kept outside the database: the seq of a sealed row and its row_hash."""

    seq: int
    row_hash: bytes

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, sep, digest = text.partition(":")
        try:
            anchor = cls(int(seq), bytes.fromhex(digest))
        except ValueError:
            anchor = None
        if not sep or anchor is None or len(anchor.row_hash) != 32 or anchor.seq < 1:
            raise PayguardError(f"an anchor is SEQ:HASH (a seq and 64 hex digits), not {text!r}")
        return anchor

    def __str__(self) -> str:
        return f"{self.seq}:{self.row_hash.hex()}"


@dataclass
class Verdict:
    """What verify found: the rows it checked, and the first bad seq with the reason."""

    checked: int = 0
    sealed_through: int = 0
    unsealed: int = 0
    first_bad: int | None = None
    reason: str = ""
    seconds: float = 0.0
    anchor_checked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad is None


class _Skipped:
    """The seqs recorded as holding no row, as sorted half-open ranges."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = sorted(ranges)
        self.starts = [lo for lo, _ in self.ranges]

    def covers(self, seq: int) -> bool:
        i = bisect.bisect_right(self.starts, seq) - 1
        return i >= 0 and self.ranges[i][0] <= seq < self.ranges[i][1]

    def first_missing(self, low: int, high: int) -> int | None:
        """The first seq in [low, high] that is neither present (the caller knows none is)
        nor skipped."""
        seq = low
        while seq <= high:
            i = bisect.bisect_right(self.starts, seq) - 1
            if i >= 0 and self.ranges[i][0] <= seq < self.ranges[i][1]:
                seq = self.ranges[i][1]
            else:
                return seq
        return None


@dataclass
class _Segment:
    """What one worker found in the seqs (low, high]: counts, its first and last rows, the
    first bad row inside it. How it links to the segment before is checked afterwards."""

    low: int
    high: int
    checked: int = 0
    unsealed: int = 0
    first_seq: int | None = None
    first_prev: bytes | None = None
    first_sealed: bool = False
    last_seq: int | None = None
    last_sealed: tuple[int, bytes] | None = None
    bad: tuple[int, str] | None = None
    anchor_checked: bool = False


def _walk(
    url: str,
    snapshot: str,
    segment: _Segment,
    head_seq: int,
    skipped: _Skipped,
    anchor: Anchor | None,
) -> _Segment:
    """Check the rows of one segment, in seq order, in the coordinator's snapshot."""
    with connect(url) as conn:
        conn.execute("set search_path = pg_catalog")
        conn.execute("begin isolation level repeatable read read only")
        conn.execute(f"set transaction snapshot '{snapshot}'")
        with conn.cursor(name="audit_verify", binary=True) as rows:
            rows.itersize = 20_000
            rows.execute(ROWS, (segment.low, segment.high))
            # Locals, not the segment's attributes, in the loop: it runs once per row.
            checked = unsealed = 0
            previous: int | None = None
            expected: bytes | None = None
            last_sealed: tuple[int, bytes] | None = None
            covers = skipped.covers if skipped.ranges else None
            anchor_seq = anchor.seq if anchor is not None else None
            for seq, prev_hash, row_hash, hash_matches in rows:
                checked += 1
                if previous is None:
                    segment.first_seq = seq
                    segment.first_sealed = row_hash is not None
                    segment.first_prev = None if prev_hash is None else bytes(prev_hash)
                elif seq - previous > 1 and previous < head_seq:
                    missing = skipped.first_missing(previous + 1, min(seq - 1, head_seq))
                    if missing is not None:
                        segment.bad = (missing, "row missing: the chain was sealed with a row here")
                        break
                if covers is not None and seq <= head_seq and covers(seq):
                    segment.bad = (seq, "inserted row: this seq held no row when it was sealed")
                    break
                if row_hash is None:
                    if seq <= head_seq:
                        segment.bad = (
                            seq,
                            f"unsealed row inside the chain sealed through {head_seq}",
                        )
                        break
                    unsealed += 1
                    previous = seq
                    continue
                if seq > head_seq:
                    segment.bad = (seq, f"sealed row beyond the recorded head (seq {head_seq})")
                    break
                if expected is not None and prev_hash != expected:
                    segment.bad = (
                        seq,
                        f"prev_hash does not match the row before it (seq {previous})",
                    )
                    break
                expected = row_hash
                if not hash_matches:
                    segment.bad = (seq, "contents changed: the row no longer matches its row_hash")
                    break
                if seq == anchor_seq:
                    assert anchor is not None
                    if bytes(row_hash) != anchor.row_hash:
                        segment.bad = (seq, "the row differs from the anchor")
                        break
                    segment.anchor_checked = True
                last_sealed = (seq, row_hash)
                previous = seq
            segment.checked = checked
            segment.unsealed = unsealed
            if last_sealed is not None:
                segment.last_sealed = (last_sealed[0], bytes(last_sealed[1]))
            segment.last_seq = previous
        conn.execute("commit")
    return segment


def verify(
    url: str,
    *,
    from_seq: int | None = None,
    anchor: Anchor | None = None,
    workers: int | None = None,
) -> Verdict:
    """Recompute the chain (from `from_seq`, trusting the row before it, or from its start)
    and report the first bad seq. The seqs are split among `workers` connections (one per
    CPU by default, at most 4), all reading the same snapshot."""
    started = time.perf_counter()
    verdict = Verdict()
    if from_seq is not None and anchor is not None and anchor.seq < from_seq:
        raise PayguardError(f"--from {from_seq} starts after the anchor's seq {anchor.seq}")
    with connect(url) as conn:
        conn.execute("set search_path = pg_catalog")
        conn.execute("begin isolation level repeatable read read only")
        exported = conn.execute("select pg_export_snapshot()").fetchone()
        assert exported is not None
        head = conn.execute(
            "select through_seq, head_hash from private.audit_seals "
            "order by through_seq desc limit 1"
        ).fetchone()
        purge = conn.execute(
            "select through_seq, through_hash from private.audit_purges "
            "order by through_seq desc limit 1"
        ).fetchone()
        skipped = _Skipped(
            [
                (int(lo), int(hi))
                for lo, hi in conn.execute(
                    "select lower(r), upper(r) from private.audit_seals as s, "
                    "pg_catalog.unnest(s.skipped_seqs) as r"
                )
            ]
        )
        start_seq, tail_hash = (int(purge[0]), bytes(purge[1])) if purge else (0, ZERO_HASH)
        head_seq, head_hash = (int(head[0]), bytes(head[1])) if head else (start_seq, None)
        if anchor is not None and purge is not None and anchor.seq <= start_seq:
            raise PayguardError(
                f"the anchor's seq {anchor.seq} was removed by the retention purge "
                f"through seq {start_seq}; anchor a later head"
            )
        if from_seq is not None and from_seq > start_seq + 1:
            before = conn.execute(
                "select seq, row_hash from public.payment_audit_logs "
                "where seq < %s and row_hash is not null order by seq desc limit 1",
                (from_seq,),
            ).fetchone()
            if before is not None:
                start_seq, tail_hash = int(before[0]), bytes(before[1])
        top = conn.execute("select max(seq) from public.payment_audit_logs").fetchone()
        last = max(int(top[0]) if top and top[0] is not None else 0, start_seq)
        count = workers or min(4, os.cpu_count() or 1)
        if last - start_seq < 50_000:
            count = 1
        bounds = [start_seq + (last - start_seq) * i // count for i in range(count)] + [last]
        segments = [_Segment(bounds[i], bounds[i + 1]) for i in range(count)]
        with ThreadPoolExecutor(count) as pool:
            done = list(
                pool.map(
                    lambda s: _walk(url, str(exported[0]), s, head_seq, skipped, anchor), segments
                )
            )
        conn.execute("commit")
    verdict.sealed_through = head_seq
    verdict.checked = sum(s.checked for s in done)
    verdict.unsealed = sum(s.unsealed for s in done)
    verdict.anchor_checked = any(s.anchor_checked for s in done)
    # Each segment's own first bad row, then how each links to the one before it.
    found = [(s.bad[0], 0, s.bad[1]) for s in done if s.bad is not None]
    tail_seq = start_seq
    hash_at_head: bytes | None = tail_hash if start_seq >= head_seq else None
    for segment in done:
        if segment.first_seq is None:
            continue
        if segment.first_seq - tail_seq > 1 and tail_seq < head_seq:
            missing = skipped.first_missing(tail_seq + 1, min(segment.first_seq - 1, head_seq))
            if missing is not None:
                found.append((missing, 1, "row missing: the chain was sealed with a row here"))
        if segment.first_sealed and segment.first_prev != tail_hash:
            found.append(
                (
                    segment.first_seq,
                    1,
                    f"prev_hash does not match the row before it (seq {tail_seq})",
                )
            )
        tail_seq = segment.last_seq if segment.last_seq is not None else tail_seq
        if segment.last_sealed is not None:
            tail_hash = hash_at_head = segment.last_sealed[1]
            sealed_seq = segment.last_sealed[0]
            tail_seq = max(tail_seq, sealed_seq)
    if not found:
        last_sealed = max(
            (s.last_sealed[0] for s in done if s.last_sealed is not None), default=start_seq
        )
        if last_sealed < head_seq:
            missing = skipped.first_missing(last_sealed + 1, head_seq)
            if missing is not None:
                found.append(
                    (
                        missing,
                        1,
                        f"rows missing from here on: the chain was sealed through {head_seq}",
                    )
                )
        if not found and head_hash is not None and hash_at_head != head_hash:
            found.append((head_seq, 1, "the chain does not end in the recorded head hash"))
        if not found and anchor is not None and not verdict.anchor_checked:
            found.append((anchor.seq, 1, "the anchored row is not in the chain"))
    if found:
        verdict.first_bad, _, verdict.reason = min(found)
    verdict.seconds = time.perf_counter() - started
    return verdict


def current_anchor(url: str) -> tuple[Anchor, str] | None:
    """The newest sealed row as an anchor, with the time it was sealed."""
    with connect(url, autocommit=False) as conn:
        row = conn.execute(
            "select l.seq, l.row_hash, "
            "(select s.sealed_at from private.audit_seals as s where s.through_seq >= l.seq "
            "order by s.through_seq limit 1) "
            "from public.payment_audit_logs as l where l.row_hash is not null "
            "order by l.seq desc limit 1"
        ).fetchone()
    if row is None:
        return None
    return Anchor(int(row[0]), bytes(row[1])), row[2].isoformat()
