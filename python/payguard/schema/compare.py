"""Compare two snapshots object by object: what only one has, and what differs (with a short
unified diff of the two definitions)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from payguard.schema.catalog import Snapshot

DIFF_LINES = 40


@dataclass(frozen=True)
class Difference:
    """One object on which two snapshots disagree."""

    key: str
    status: str  # "only in A" | "only in B" | "differs"
    diff: str = ""  # for "differs": a unified diff, A's lines `-`, B's lines `+`

    def as_dict(self) -> dict[str, str]:
        return {"object": self.key, "status": self.status, "diff": self.diff}


def compare(a: Snapshot, b: Snapshot, *, a_name: str = "A", b_name: str = "B") -> list[Difference]:
    """The differences between `a` and `b`, ordered by object key."""
    found: list[Difference] = []
    for key in sorted(a.keys() | b.keys()):
        if key not in b:
            found.append(Difference(key, f"only in {a_name}"))
        elif key not in a:
            found.append(Difference(key, f"only in {b_name}"))
        elif a[key] != b[key]:
            found.append(Difference(key, "differs", _diff(a[key], b[key], a_name, b_name)))
    return found


def _diff(a: str, b: str, a_name: str, b_name: str) -> str:
    lines = list(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), fromfile=a_name, tofile=b_name, n=2, lineterm=""
        )
    )
    if not lines:
        # The texts differ only in line endings or a final newline: show the lines as literals.
        lines = list(
            difflib.unified_diff(
                [repr(line) for line in a.splitlines(keepends=True)],
                [repr(line) for line in b.splitlines(keepends=True)],
                fromfile=a_name,
                tofile=b_name,
                n=1,
                lineterm="",
            )
        )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"… {len(lines) - DIFF_LINES} more diff lines"]
    return "\n".join(lines)
