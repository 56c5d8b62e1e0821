"""The keys of processor tokens, as operations handle them: a new key entry to give to
`supabase secrets set`, and a check of the key sets a runtime would read (never printing a key).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from payguard.envelope import KEY_BYTES, KEYS_VARIABLE, KeySet, b64encode, key_id
from payguard.token_index import INDEX_KEYS_VARIABLE


def new_entry(kid: str | None = None, today: dt.date | None = None) -> str:
    """`kid:base64url` of a fresh 256-bit key; the id defaults to k<UTC date> (k20261205)."""
    name = kid if kid is not None else f"k{(today or dt.datetime.now(dt.UTC).date()):%Y%m%d}"
    return f"{key_id(name)}:{b64encode(secrets.token_bytes(KEY_BYTES))}"


@dataclass(frozen=True)
class KeyReport:
    """What a runtime would use: each set's key ids (the current first), and the ids of keys
    that both sets hold (one key must not serve both the envelopes and the index)."""

    envelope_ids: list[str]
    index_ids: list[str]
    shared: list[tuple[str, str]]

    def as_dict(self) -> dict[str, object]:
        return {
            "envelope_keys": {"variable": KEYS_VARIABLE, "ids": self.envelope_ids},
            "index_keys": {"variable": INDEX_KEYS_VARIABLE, "ids": self.index_ids},
            "shared": [{"envelope": e, "index": i} for e, i in self.shared],
            "ok": not self.shared,
        }


def local_key_files(state_dir: Path) -> dict[str, Path]:
    """The local stack's key files (under the git-ignored state folder), by the variable each
    stands for; each is made, readable by its owner alone, with one new key when missing."""
    folder = state_dir / "keys"
    files = {KEYS_VARIABLE: folder / "token-keys", INDEX_KEYS_VARIABLE: folder / "token-index-keys"}
    for variable, path in files.items():
        if path.exists():
            continue
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = new_entry("k-local" if variable == KEYS_VARIABLE else "i-local")
        try:
            with path.open("x", encoding="utf-8") as handle:
                path.chmod(0o600)
                handle.write(entry + "\n")
        except FileExistsError:
            pass  # made at the same moment by another process
    return files


def local_environment(state_dir: Path) -> dict[str, str]:
    """The token key variables for the local stack: the caller's environment's when set, else
    the local key files'."""
    files = local_key_files(state_dir)
    return {
        variable: os.environ.get(variable) or path.read_text(encoding="utf-8").strip()
        for variable, path in files.items()
    }


def load(variable: str, key_file: Path | None) -> KeySet:
    return (
        KeySet.from_file(key_file)
        if key_file is not None
        else KeySet.from_environment(variable=variable)
    )


def load_or_local(variable: str, key_file: Path | None, state_dir: Path) -> KeySet:
    """The keys of `variable`: from `key_file`, else the environment, else the local stack's
    key file when the local stack made one (never a new key: one would match no stored row)."""
    if key_file is not None or os.environ.get(variable):
        return load(variable, key_file)
    folder = state_dir / "keys"
    local = folder / ("token-keys" if variable == KEYS_VARIABLE else "token-index-keys")
    if local.is_file():
        return KeySet.from_file(local)
    return KeySet.from_environment(variable=variable)  # the error that names the variable


def check(envelope_keys: KeySet, index_keys: KeySet) -> KeyReport:
    shared = [
        (e, i)
        for e, envelope_key in envelope_keys.keys.items()
        for i, index_key in index_keys.keys.items()
        if hmac.compare_digest(envelope_key, index_key)
    ]
    return KeyReport(list(envelope_keys.keys), list(index_keys.keys), shared)
