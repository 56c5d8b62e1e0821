"""Users: erase one's personal data with private.erase_user, as the database owner."""

from __future__ import annotations

import uuid
from typing import Any

from payguard.cluster import APP_ROLE
from payguard.db import connect
from payguard.errors import UsageError


def parse_user_id(text: str) -> uuid.UUID:
    """The user id `text` names; a UsageError when it is not a UUID."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"USER_ID must be a user's id (a UUID), not {text!r}") from None


def erase(url: str, user_id: uuid.UUID, reason: str) -> dict[str, Any]:
    """Erase the user's personal data for `reason`; returns the function's summary. The
    database refuses an unknown user (PT404), a user already erased or with open money
    (PT409, naming what is open) and a reason that is not written (PT422), and then changes
    nothing. A superuser URL acts as the owner (the function is the owner's alone)."""
    with connect(url) as conn:
        superuser = conn.execute("select rolsuper from pg_roles where rolname = current_user")
        row = superuser.fetchone()
        if row is not None and row[0]:
            conn.execute(f"set role {APP_ROLE}")
        result = conn.execute("select private.erase_user(%s, %s)", (user_id, reason)).fetchone()
    assert result is not None
    summary: dict[str, Any] = result[0]
    return summary
