"""What PostgREST sets at the start of each request, from the caller's JWT.

PostgREST opens one transaction per request, makes it read-only for GET and HEAD, and runs
set_config(name, value, true) for each of these settings before the query itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
SEARCH_PATH = "public, extensions"
AAL_LEVELS = ("aal1", "aal2", "aal3")


@dataclass(frozen=True)
class Request:
    role: str
    claims: Mapping[str, Any]
    method: str = "POST"
    path: str = "/rest/v1/"
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)

    @property
    def read_only(self) -> bool:
        return self.method.upper() in READ_ONLY_METHODS

    def settings(self) -> list[tuple[str, str]]:
        """(name, value) pairs, in the order PostgREST sets them."""
        claims = {**self.claims, "role": self.role}
        return [
            ("search_path", SEARCH_PATH),
            ("role", self.role),
            ("request.jwt.claims", json.dumps(claims, sort_keys=True)),
            ("request.method", self.method.upper()),
            ("request.path", self.path),
            ("request.headers", json.dumps({k.lower(): v for k, v in self.headers.items()})),
            ("request.cookies", json.dumps(dict(self.cookies))),
        ]


def user_claims(
    user_id: uuid.UUID | str,
    *,
    aal: str = "aal1",
    amr: Sequence[Mapping[str, Any]] | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    """The claims Supabase Auth puts in an access token for `user_id`."""
    if aal not in AAL_LEVELS:
        raise ValueError(f"aal must be one of {', '.join(AAL_LEVELS)}, not {aal!r}")
    now = int(time.time())
    if amr is None:
        amr = [{"method": "password", "timestamp": now}]
        if aal != "aal1":
            amr = [{"method": "totp", "timestamp": now}, *amr]
    return {
        "iss": "http://127.0.0.1:54321/auth/v1",
        "aud": "authenticated",
        "sub": str(user_id),
        "email": email or "",
        "role": "authenticated",
        "aal": aal,
        "amr": list(amr),
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
        "iat": now,
        "exp": now + 3600,
    }


def service_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "supabase-demo", "iat": now, "exp": now + 3600}
