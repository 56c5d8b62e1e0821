"""Access tokens as Supabase's auth server issues them: the claims it makes for a user, passed
through the project's Custom Access Token Hook as the auth server calls it (as
supabase_auth_admin), so that tests request with the role and claims a real token would carry."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from payguard.errors import PayguardError
from payguard.testing.request import user_claims

HOOK = "public.custom_access_token_hook"


def issued_claims(
    admin_url: str, user_id: uuid.UUID | str, *, aal: str = "aal1", method: str = "password"
) -> dict[str, Any]:
    """The claims of `user_id`'s access token after the hook, called over `admin_url` (a
    superuser's) as supabase_auth_admin; PayguardError when the hook answers an error."""
    event = {
        "user_id": str(user_id),
        "claims": user_claims(user_id, aal=aal),
        "authentication_method": method,
    }
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local role supabase_auth_admin")
        row = conn.execute(f"select {HOOK}(%s)", (Jsonb(event),)).fetchone()
    answer = row[0] if row else None
    if not isinstance(answer, dict) or "claims" not in answer:
        raise PayguardError(f"the access token hook answered {answer!r}")
    claims: dict[str, Any] = answer["claims"]
    return claims
