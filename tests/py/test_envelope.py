"""Envelopes and blind-index lookups of processor tokens in Python: the shared vectors (which
the Deno implementation passes too, supabase/functions/tests/envelope_test.ts), fresh keys and
nonces, and every way an envelope or a key set can be wrong, each a clear error that shows no
key and no token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from payguard.envelope import (
    KEYS_VARIABLE,
    EnvelopeError,
    KeySet,
    b64decode,
    b64encode,
    decrypt,
    encrypt,
    seal,
)
from payguard.token_index import INDEX_KEYS_VARIABLE, lookup, lookups

VECTORS = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "token-envelope-vectors.json").read_text()
)
KEYS = KeySet.parse(VECTORS["keys"])
INDEX_KEYS = KeySet.parse(VECTORS["index_keys"], source=INDEX_KEYS_VARIABLE)


def place(case: dict[str, Any]) -> dict[str, str]:
    return {"table": case["table"], "column": case["column"], "row_id": case["row_id"]}


@pytest.mark.parametrize("case", VECTORS["vectors"], ids=lambda c: c["name"])
def test_each_vector_is_reproduced_from_its_data_key_and_nonce_and_read_back(case):
    keys = KeySet(current=case["kid"], keys=KEYS.keys)
    made = seal(
        keys,
        case["plaintext"],
        **place(case),
        data_key=b64decode(case["data_key"], "data key"),
        nonce=b64decode(case["nonce"], "nonce"),
    )
    assert made == case["envelope"]
    # the current key reads an envelope made under an older one
    assert decrypt(KEYS, case["envelope"], **place(case)) == case["plaintext"]


@pytest.mark.parametrize("case", VECTORS["failures"], ids=lambda c: c["name"])
def test_each_failure_vector_is_refused_without_showing_a_key_or_the_token(case):
    with pytest.raises(EnvelopeError) as refused:
        decrypt(KEYS, case["envelope"], **place(case))
    message = str(refused.value)
    expected = "no key 'k2024z'" if case["envelope"]["kid"] == "k2024z" else "it was changed"
    assert expected in message
    assert "pm_" not in message
    for key in KEYS.keys.values():
        assert b64encode(key) not in message


def test_every_value_gets_a_fresh_data_key_and_nonce():
    first = encrypt(KEYS, "pm_1Same", table="payment_methods", column="token", row_id="r1")
    second = encrypt(KEYS, "pm_1Same", table="payment_methods", column="token", row_id="r1")
    assert first["nonce"] != second["nonce"]
    assert first["wrapped_key"] != second["wrapped_key"]
    assert first["ciphertext"] != second["ciphertext"]
    for envelope in (first, second):
        assert decrypt(KEYS, envelope, table="payment_methods", column="token", row_id="r1") == (
            "pm_1Same"
        )
    assert first["kid"] == "k2026a"  # the first key of the set is the current one


@pytest.mark.parametrize("case", VECTORS["key_set_errors"], ids=lambda c: repr(c["text"])[:40])
def test_a_key_set_that_cannot_be_used_is_named_as_such(case):
    with pytest.raises(EnvelopeError) as refused:
        KeySet.parse(case["text"])
    assert case["error"] in str(refused.value)


def test_keys_come_from_the_environment_or_a_key_file(tmp_path: Path):
    with pytest.raises(EnvelopeError, match=rf"\${KEYS_VARIABLE} is not set"):
        KeySet.from_environment({})
    assert KeySet.from_environment({KEYS_VARIABLE: VECTORS["keys"]}) == KEYS
    key_file = tmp_path / "token-keys"
    key_file.write_text("# current first\n" + VECTORS["keys"].replace(",", "\n") + "\n")
    assert KeySet.from_file(key_file) == KEYS
    with pytest.raises(EnvelopeError, match="cannot read the key file"):
        KeySet.from_file(tmp_path / "missing")


@pytest.mark.parametrize("case", VECTORS["envelope_errors"], ids=lambda c: c["name"])
def test_a_malformed_envelope_is_named_as_such(case):
    vector = VECTORS["vectors"][0]
    envelope = {**vector["envelope"], **case.get("change", {})}
    envelope.pop(case.get("remove", ""), None)
    with pytest.raises(EnvelopeError) as refused:
        decrypt(KEYS, envelope, **place(vector))
    assert case["error"] in str(refused.value)


@pytest.mark.parametrize("case", VECTORS["token_errors"], ids=lambda c: c["error"])
def test_a_token_that_is_not_text_is_refused_by_encrypt_and_lookup(case):
    with pytest.raises(EnvelopeError, match=case["error"]):
        encrypt(KEYS, case["token"], table="payment_methods", column="token", row_id="r1")
    with pytest.raises(EnvelopeError, match=case["error"]):
        lookup(INDEX_KEYS, case["token"])


# -- the blind index -----------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["lookups"], ids=lambda c: f"{c['kid']}-{c['token']}")
def test_each_lookup_of_the_vectors_is_reproduced_under_the_key_it_names(case):
    assert lookup(INDEX_KEYS, case["token"], case["kid"]) == case["lookup"]


def test_a_tokens_lookups_are_under_every_index_key_the_current_first():
    token = VECTORS["lookups"][0]["token"]
    found = lookups(INDEX_KEYS, token)
    assert [value.split(":")[0] for value in found] == ["i2026a", "i2025b"]
    assert found[0] == lookup(INDEX_KEYS, token)
    assert lookup(INDEX_KEYS, token + "x") != found[0]
    # the envelopes' keys are not the index keys
    with pytest.raises(EnvelopeError, match="no key 'i2026a'"):
        lookup(KEYS, token, "i2026a")
    with pytest.raises(EnvelopeError, match=r"\$PAYGUARD_TOKEN_INDEX_KEYS is not set"):
        KeySet.from_environment({}, INDEX_KEYS_VARIABLE)
