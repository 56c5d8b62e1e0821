"""Local HS256 tokens: what the functions verify, signed as Supabase's local stack signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from payguard.errors import PayguardError
from payguard.jwt import LOCAL_JWT_SECRET, api_key, sign, verify
from payguard.testing.local_stack import user_token


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_token_is_a_standard_hs256_jwt():
    token = sign(
        {"sub": "u1", "exp": int(time.time()) + 60}, "a-secret-of-at-least-32-characters!!"
    )
    header, payload, signature = token.split(".")
    assert json.loads(b64decode(header)) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(b64decode(payload))["sub"] == "u1"
    expected = hmac.new(
        b"a-secret-of-at-least-32-characters!!", f"{header}.{payload}".encode(), hashlib.sha256
    ).digest()
    assert b64decode(signature) == expected


def test_verify_accepts_a_good_token_and_refuses_forged_expired_and_malformed_ones():
    token = user_token("7d1c3f2a-0000-4000-8000-000000000002", aal="aal2")
    claims = verify(token, LOCAL_JWT_SECRET)
    assert (claims["aud"], claims["role"], claims["aal"]) == (
        "authenticated",
        "authenticated",
        "aal2",
    )
    with pytest.raises(PayguardError, match="signature"):
        verify(token, "another-secret-of-at-least-32-characters")
    header, _payload, signature = token.split(".")
    forged = (
        base64.urlsafe_b64encode(json.dumps({**claims, "sub": "someone-else"}).encode())
        .rstrip(b"=")
        .decode()
    )
    with pytest.raises(PayguardError, match="signature"):
        verify(f"{header}.{forged}.{signature}", LOCAL_JWT_SECRET)
    with pytest.raises(PayguardError, match="expired"):
        verify(user_token("u", exp=int(time.time()) - 1), LOCAL_JWT_SECRET)
    with pytest.raises(PayguardError, match="malformed"):
        verify("not-a-token", LOCAL_JWT_SECRET)


def test_the_environment_secret_wins_over_the_local_default(monkeypatch):
    monkeypatch.setenv("SUPABASE_JWT_SECRET", "the-projects-own-secret-of-32-characters")
    token = api_key("service_role")
    assert verify(token)["role"] == "service_role"
    with pytest.raises(PayguardError, match="signature"):
        verify(token, LOCAL_JWT_SECRET)
