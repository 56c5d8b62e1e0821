"""The keyed blind index of processor tokens: what keeps "one row per Stripe id" and lets
payment_service and support find a row by its Stripe id, without the database holding the id
or the key. supabase/functions/_shared/token_index.ts computes the same; both pass the lookups
in tests/data/token-envelope-vectors.json.

A lookup is `kid:base64url(HMAC-SHA-256(key, "payguard.token-index" 0x1F "1" 0x1F token))`: the
key is not the envelopes' (PAYGUARD_TOKEN_INDEX_KEYS, same format as PAYGUARD_TOKEN_KEYS), and
its id is kept in the value, so that a row written under an older index key is still found
while the index is rebuilt under a new one (`lookups` gives the value under every key).
"""

from __future__ import annotations

import hashlib
import hmac

from payguard.envelope import KeySet, b64encode, utf8

INDEX_KEYS_VARIABLE = "PAYGUARD_TOKEN_INDEX_KEYS"
_DOMAIN = b"payguard.token-index\x1f1\x1f"


def lookup(keys: KeySet, token: str, kid: str | None = None) -> str:
    """The blind index of `token` under key `kid` (the current index key by default)."""
    name = keys.current if kid is None else kid
    digest = hmac.new(keys.key(name), _DOMAIN + utf8(token, "the token"), hashlib.sha256).digest()
    return f"{name}:{b64encode(digest)}"


def lookups(keys: KeySet, token: str) -> list[str]:
    """The blind index of `token` under every index key, the current first."""
    return [lookup(keys, token, kid) for kid in keys.keys]
