"""Retention of payment records: run private.purge_closed_records() as the database owner."""

from __future__ import annotations

from typing import Any

from payguard.cluster import APP_ROLE
from payguard.db import connect


def purge_closed_records(url: str) -> dict[str, Any]:
    """Remove the closed payment records past their seven years; returns the function's
    summary ({older_than, removed: {table: rows}}). A superuser URL acts as the owner (the
    purge is the owner's alone)."""
    with connect(url) as conn:
        superuser = conn.execute("select rolsuper from pg_roles where rolname = current_user")
        row = superuser.fetchone()
        if row is not None and row[0]:
            conn.execute(f"set role {APP_ROLE}")
        result = conn.execute("select private.purge_closed_records()").fetchone()
    assert result is not None
    summary: dict[str, Any] = result[0]
    return summary
