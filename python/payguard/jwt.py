"""HS256 JSON Web Tokens for local development and tests, signed as Supabase's local stack
signs them: with the project's JWT secret (Supabase's local default unless the environment
gives another). Production tokens are issued by Supabase Auth, never by this module."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Mapping
from typing import Any

from payguard.errors import PayguardError

# The secret the Supabase CLI's local stack signs with; public, for local use only.
LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105
JWT_SECRET_ENV = "SUPABASE_JWT_SECRET"  # noqa: S105 - the variable's name, not a secret


def jwt_secret() -> str:
    """$SUPABASE_JWT_SECRET if set, else the local default."""
    return os.environ.get(JWT_SECRET_ENV) or LOCAL_JWT_SECRET


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: Mapping[str, Any], secret: str | None = None) -> str:
    """A compact HS256 JWT carrying `claims`."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(dict(claims), separators=(",", ":"), sort_keys=True).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    key = (secret or jwt_secret()).encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def verify(token: str, secret: str | None = None, *, now: int | None = None) -> dict[str, Any]:
    """The claims of an HS256 `token` whose signature and `exp` hold; PayguardError otherwise."""
    try:
        header, payload, signature = token.split(".")
        algorithm = json.loads(_unb64(header)).get("alg")
        claims = json.loads(_unb64(payload))
        given = _unb64(signature)
    except (ValueError, AttributeError) as exc:
        raise PayguardError("malformed token") from exc
    if algorithm != "HS256" or not isinstance(claims, dict):
        raise PayguardError("token is not an HS256 JWT")
    key = (secret or jwt_secret()).encode()
    expected = hmac.new(key, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise PayguardError("token signature does not verify")
    expires = claims.get("exp")
    if isinstance(expires, int) and expires <= (now if now is not None else int(time.time())):
        raise PayguardError("token has expired")
    return claims


def api_key(role: str, secret: str | None = None, *, lifetime: int = 10 * 365 * 86400) -> str:
    """A project API key as Supabase's local stack makes them (`anon`, `service_role`)."""
    now = int(time.time())
    return sign({"iss": "supabase-demo", "role": role, "iat": now, "exp": now + lifetime}, secret)
