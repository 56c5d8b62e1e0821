"""The card-number guard on the two corpora of payguard.card_corpus: the false-positive rate
on text that holds no card number, the share of card numbers found, and the cost per call,
each for the present guard (`private.holds_card_number`) and the previous one, measured in
the same run on the same database.

The previous guard is loaded from the migrations that defined it (its Luhn check and its
prefiltered search), into a schema of its own, so that both run side by side.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payguard import card_corpus
from payguard.db import Connection, connect
from payguard.errors import PayguardError
from payguard.sql_split import split_statements

BASELINE_SCHEMA = "card_guard_baseline"
# The previous guard's functions (its Luhn check and its prefiltered search), kept beside this
# module since the migrations that defined them were squashed into the baseline.
PREVIOUS_GUARD = Path(__file__).with_name("card_guard_previous.sql")
PRESENT = "private.holds_card_number"
PREVIOUS = f"{BASELINE_SCHEMA}.holds_card_number"


@dataclass(frozen=True)
class Rates:
    lines: int
    flagged: int
    by_category: dict[str, tuple[int, int]]  # category: (flagged, lines)

    @property
    def rate(self) -> float:
        return self.flagged / self.lines if self.lines else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "flagged": self.flagged,
            "rate": round(self.rate, 5),
            "by_category": {
                category: {"flagged": flagged, "lines": lines}
                for category, (flagged, lines) in sorted(self.by_category.items())
            },
        }


@dataclass(frozen=True)
class Cost:
    corpus: str
    calls: int
    previous_us: float  # median microseconds per call
    present_us: float

    @property
    def ratio(self) -> float:
        return self.present_us / self.previous_us

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus": self.corpus,
            "calls": self.calls,
            "previous_us_per_call": round(self.previous_us, 2),
            "present_us_per_call": round(self.present_us, 2),
            "ratio": round(self.ratio, 3),
        }


@dataclass(frozen=True)
class Result:
    false_positives: dict[str, Rates]  # "previous", "present"
    found: dict[str, Rates]
    costs: list[Cost]

    def as_dict(self) -> dict[str, Any]:
        return {
            "false_positives": {k: v.as_dict() for k, v in self.false_positives.items()},
            "cards_found": {k: v.as_dict() for k, v in self.found.items()},
            "cost": [c.as_dict() for c in self.costs],
        }


def baseline_sql() -> list[str]:
    """The previous guard's functions, renamed into BASELINE_SCHEMA."""
    if not PREVIOUS_GUARD.is_file():
        raise PayguardError(f"{PREVIOUS_GUARD} is missing: the previous guard cannot be loaded")
    return [
        re.sub(
            r"^create (or replace )?function",
            "create or replace function",
            s.text,
            count=1,
            flags=re.M,
        ).replace("private.", f"{BASELINE_SCHEMA}.")
        for s in split_statements(PREVIOUS_GUARD.read_text(encoding="utf-8"))
        if re.search(r"^create (or replace )?function", s.text, re.M)
    ]


def load_baseline(conn: Connection) -> None:
    with conn.transaction():
        conn.execute(f"drop schema if exists {BASELINE_SCHEMA} cascade")
        conn.execute(f"create schema {BASELINE_SCHEMA}")
        for statement in baseline_sql():
            conn.execute(statement)


def rates(conn: Connection, function: str, lines: list[card_corpus.Line]) -> Rates:
    flags = conn.execute(
        f"select {function}(t) from unnest(%s::text[]) with ordinality as u (t, n) order by n",
        ([text for _, text in lines],),
    ).fetchall()
    by_category: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for (category, _), (flagged,) in zip(lines, flags, strict=True):
        top = category.split("/")[0]
        totals[top] += 1
        by_category[top] += int(bool(flagged))
    return Rates(
        lines=len(lines),
        flagged=sum(by_category.values()),
        by_category={c: (by_category[c], totals[c]) for c in totals},
    )


def _seconds(conn: Connection, expression: str, texts: list[str]) -> float:
    started = time.perf_counter()
    conn.execute(
        f"select count(*) filter (where {expression}) from unnest(%s::text[]) as u (t)", (texts,)
    ).fetchone()
    return time.perf_counter() - started


def cost(conn: Connection, corpus: str, texts: list[str], rounds: int) -> Cost:
    """Median microseconds per call of each guard over `texts`, in alternating rounds, less
    a round that only reads the texts."""
    timings: dict[str, list[float]] = {PREVIOUS: [], PRESENT: []}
    for function in (PREVIOUS, PRESENT):  # warm each backend cache (plans, regexes) once
        _seconds(conn, f"{function}(t)", texts[:50])
    for number in range(rounds):
        order = (PREVIOUS, PRESENT) if number % 2 == 0 else (PRESENT, PREVIOUS)
        for function in order:
            empty = _seconds(conn, "t is not null", texts)
            spent = _seconds(conn, f"{function}(t)", texts)
            timings[function].append(max(spent - empty, 0.0) / len(texts) * 1e6)
    return Cost(
        corpus=corpus,
        calls=len(texts),
        previous_us=statistics.median(timings[PREVIOUS]),
        present_us=statistics.median(timings[PRESENT]),
    )


def run(url: str, rounds: int = 7) -> Result:
    non_card = card_corpus.non_card()
    cards = card_corpus.cards()
    with connect(url) as conn:
        load_baseline(conn)
        try:
            false_positives = {
                "previous": rates(conn, PREVIOUS, non_card),
                "present": rates(conn, PRESENT, non_card),
            }
            found = {
                "previous": rates(conn, PREVIOUS, cards),
                "present": rates(conn, PRESENT, cards),
            }
            costs = [
                cost(conn, "non-card text", [t for _, t in non_card], rounds),
                cost(conn, "card numbers", [t for _, t in cards], rounds),
            ]
        finally:
            conn.execute(f"drop schema if exists {BASELINE_SCHEMA} cascade")
    return Result(false_positives, found, costs)
