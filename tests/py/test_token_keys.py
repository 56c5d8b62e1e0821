"""`payguard keys`: a new key entry, and the check of the key sets the runtimes read (exit 1
when one key serves both the envelopes and the blind index; keys never printed)."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from payguard.cli import app
from payguard.envelope import KeySet, b64decode
from payguard.errors import ExitCode
from payguard.token_keys import new_entry

runner = CliRunner()


def test_a_new_entry_is_a_fresh_key_under_the_id_given_or_todays():
    first, second = new_entry("k1"), new_entry("k1")
    assert first != second
    for entry in (first, second):
        kid, _, key = entry.partition(":")
        assert kid == "k1"
        assert len(b64decode(key, "key")) == 32
    assert new_entry(today=dt.date(2026, 12, 5)).startswith("k20261205:")
    assert KeySet.parse(f"{first},{new_entry('k0')}").current == "k1"


def test_the_cli_makes_an_entry_and_refuses_an_id_that_is_none():
    made = runner.invoke(app, ["keys", "new", "--kid", "k2027a", "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["kid"] == "k2027a"
    refused = runner.invoke(app, ["keys", "new", "--kid", "bad id"])
    assert refused.exit_code == ExitCode.USAGE
    assert "--kid: 'bad id' is not a key id" in refused.output


def test_check_lists_the_ids_and_finds_a_key_that_serves_both_sets(tmp_path, monkeypatch):
    envelope, index = new_entry("e1"), new_entry("i1")
    monkeypatch.setenv("PAYGUARD_TOKEN_KEYS", f"{envelope},{new_entry('e0')}")
    monkeypatch.setenv("PAYGUARD_TOKEN_INDEX_KEYS", index)
    clean = runner.invoke(app, ["keys", "check"])
    assert clean.exit_code == 0, clean.output
    assert "envelope keys  e1, e0  (current: e1)" in clean.output
    assert envelope.split(":")[1] not in clean.output
    # the same bytes under another id, from a key file
    index_file = tmp_path / "index-keys"
    index_file.write_text(f"i2:{envelope.split(':')[1]}\n")
    shared = runner.invoke(app, ["keys", "check", "--index-key-file", str(index_file), "--json"])
    assert shared.exit_code == ExitCode.FINDING, shared.output
    report = json.loads(shared.output)
    assert (report["ok"], report["shared"]) == (False, [{"envelope": "e1", "index": "i2"}])
    assert envelope.split(":")[1] not in shared.output
    monkeypatch.delenv("PAYGUARD_TOKEN_KEYS")
    missing = runner.invoke(app, ["keys", "check"])
    assert missing.exit_code == ExitCode.FINDING
    assert "$PAYGUARD_TOKEN_KEYS is not set" in missing.output
