"""Envelope encryption of processor tokens (pm_, cus_, acct_, ba_/card_ ids), where the keys
live: outside the database. supabase/functions/_shared/envelope.ts is the same for the Edge
Functions; both pass the vectors in tests/data/token-envelope-vectors.json.

Each value gets a fresh 256-bit data key and a fresh 96-bit nonce: AES-256-GCM encrypts the
token under the data key, with additional authenticated data that names the table, column and
row it belongs to, so a ciphertext copied onto another row or column does not decrypt. The
data key is wrapped (AES key wrap, RFC 3394) under a key-encryption key named by its key id.
The envelope keeps the key id, the algorithm, the wrapped key, the nonce and the ciphertext
(its last 16 bytes the GCM tag), base64url without padding.

Keys come from the environment (PAYGUARD_TOKEN_KEYS, as the functions' secrets) or a key file:
`kid:base64url-of-32-bytes` entries, comma- or line-separated, the first the one new values are
encrypted under, the others still read (a rotation in progress).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from payguard.errors import PayguardError

VERSION = 1
ALGORITHM = "A256GCM+A256KW"
KEYS_VARIABLE = "PAYGUARD_TOKEN_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
# A key id: what a secret's name may hold, short enough to sit in every envelope.
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Every field of an envelope, in the order it is written.
FIELDS = ("v", "alg", "kid", "wrapped_key", "nonce", "ciphertext")


class EnvelopeError(PayguardError):
    """A key set or an envelope that cannot be used; the message says which and why, never a
    key or a token."""


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """The bytes of canonical base64url text (no padding, unused bits zero): any other text,
    even one that decodes to the same bytes, is refused, so that an envelope has one form."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise EnvelopeError(f"{what} is not base64url text")
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{what} is not base64url text") from None
    if b64encode(decoded) != text:
        raise EnvelopeError(f"{what} is not canonical base64url text")
    return decoded


def utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise EnvelopeError(f"{what} is not text: it holds a lone surrogate") from None


@dataclass(frozen=True)
class KeySet:
    """Key-encryption keys by id; `current` encrypts, every one decrypts."""

    current: str
    keys: Mapping[str, bytes]

    @classmethod
    def parse(cls, text: str, source: str = KEYS_VARIABLE) -> KeySet:
        """`kid:base64url` entries, comma- or line-separated; blank lines and `#` comments
        are skipped. The first entry is the current key."""
        # Lines end at "\n" alone, and entries lose spaces, tabs and "\r" around them: as
        # envelope.ts reads them.
        entries = [
            entry.strip(" \t\r")
            for line in text.split("\n")
            if not line.strip(" \t\r").startswith("#")
            for entry in line.split(",")
            if entry.strip(" \t\r")
        ]
        if not entries:
            raise EnvelopeError(f"{source} holds no key: write kid:base64url-of-32-bytes")
        keys: dict[str, bytes] = {}
        for number, entry in enumerate(entries, start=1):
            kid, separator, encoded = entry.partition(":")
            if not separator or not _KEY_ID.fullmatch(kid):
                raise EnvelopeError(
                    f"entry {number} of {source} is not kid:base64url (a key id is 1 to 64 "
                    "letters, digits, '_', '.' or '-')"
                )
            key = b64decode(encoded, f"key {kid} in {source}")
            if len(key) != KEY_BYTES:
                raise EnvelopeError(
                    f"key {kid} in {source} is {len(key)} bytes; an AES-256 key is {KEY_BYTES}"
                )
            if kid in keys:
                raise EnvelopeError(f"key {kid} appears twice in {source}")
            keys[kid] = key
        return cls(current=next(iter(keys)), keys=keys)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, variable: str = KEYS_VARIABLE
    ) -> KeySet:
        text = (os.environ if environ is None else environ).get(variable)
        if not text:
            raise EnvelopeError(
                f"${variable} is not set: processor tokens cannot be encrypted, read or looked "
                "up (give kid:base64url-of-32-bytes entries, or read them from a key file)"
            )
        return cls.parse(text, source=variable)

    @classmethod
    def from_file(cls, path: Path) -> KeySet:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EnvelopeError(f"cannot read the key file {path}: {exc.strerror}") from None
        return cls.parse(text, source=str(path))

    def key(self, kid: str) -> bytes:
        found = self.keys.get(kid)
        if found is None:
            raise EnvelopeError(
                f"no key {kid!r} among the keys given ({', '.join(self.keys)}): it was "
                "retired, or the keys are another environment's"
            )
        return found


def key_id(name: str) -> str:
    """`name`, when it can be a key id (1 to 64 letters, digits, '_', '.' or '-')."""
    if not _KEY_ID.fullmatch(name):
        raise EnvelopeError(f"{name!r} is not a key id: 1 to 64 letters, digits, '_', '.' or '-'")
    return name


def associated_data(table: str, column: str, row_id: str) -> bytes:
    """What binds a ciphertext to its place: the table, the column and the row's id."""
    for name, value in (("table", table), ("column", column), ("row id", row_id)):
        if not value or "\x1f" in value:
            raise EnvelopeError(f"an envelope's {name} must be a non-empty name")
    return "\x1f".join(("payguard.token", str(VERSION), table, column, row_id)).encode()


def encrypt(
    keys: KeySet, plaintext: str, *, table: str, column: str, row_id: str
) -> dict[str, Any]:
    """The envelope of `plaintext` for (table, column, row_id), under the current key, with a
    fresh data key and nonce."""
    return seal(
        keys,
        plaintext,
        table=table,
        column=column,
        row_id=row_id,
        data_key=secrets.token_bytes(KEY_BYTES),
        nonce=secrets.token_bytes(NONCE_BYTES),
    )


def seal(
    keys: KeySet,
    plaintext: str,
    *,
    table: str,
    column: str,
    row_id: str,
    data_key: bytes,
    nonce: bytes,
) -> dict[str, Any]:
    """`encrypt` with the data key and nonce given: for the shared test vectors only (a data
    key and nonce used twice would break GCM)."""
    if len(data_key) != KEY_BYTES or len(nonce) != NONCE_BYTES:
        raise EnvelopeError("a data key is 32 bytes and a nonce 12")
    ciphertext = AESGCM(data_key).encrypt(
        nonce, utf8(plaintext, "the token"), associated_data(table, column, row_id)
    )
    return {
        "v": VERSION,
        "alg": ALGORITHM,
        "kid": keys.current,
        "wrapped_key": b64encode(aes_key_wrap(keys.key(keys.current), data_key)),
        "nonce": b64encode(nonce),
        "ciphertext": b64encode(ciphertext),
    }


def decrypt(
    keys: KeySet, envelope: Mapping[str, Any], *, table: str, column: str, row_id: str
) -> str:
    """The token an envelope holds, when it is whole and belongs to (table, column, row_id)."""
    if not isinstance(envelope, Mapping):
        raise EnvelopeError("an envelope is a JSON object")
    missing = [name for name in FIELDS if name not in envelope]
    if missing:
        raise EnvelopeError(f"the envelope lacks {', '.join(missing)}")
    version = envelope["v"]
    # the JSON number 1 (1.0 too, as JavaScript reads it), not true
    numeric = isinstance(version, int | float) and not isinstance(version, bool)
    if not numeric or version != VERSION or envelope["alg"] != ALGORITHM:
        raise EnvelopeError(
            f"envelope version {envelope['v']!r} / {envelope['alg']!r} is not "
            f"{VERSION} / {ALGORITHM}"
        )
    kid = envelope["kid"]
    if not isinstance(kid, str) or not _KEY_ID.fullmatch(kid):
        raise EnvelopeError("the envelope's key id is not one")
    kek = keys.key(kid)
    nonce = b64decode(envelope["nonce"], "the envelope's nonce")
    if len(nonce) != NONCE_BYTES:
        raise EnvelopeError(f"the envelope's nonce is {len(nonce)} bytes, not {NONCE_BYTES}")
    wrapped = b64decode(envelope["wrapped_key"], "the wrapped key")
    ciphertext = b64decode(envelope["ciphertext"], "the ciphertext")
    try:
        data_key = aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        data_key = b""
    if len(data_key) != KEY_BYTES:
        raise EnvelopeError(
            f"the envelope's data key does not unwrap under key {kid}: it was changed"
        )
    try:
        return (
            AESGCM(data_key)
            .decrypt(nonce, ciphertext, associated_data(table, column, row_id))
            .decode("utf-8")
        )
    except (InvalidTag, UnicodeDecodeError):
        raise EnvelopeError(
            f"the envelope does not decrypt for {table}.{column} of row {row_id}: it was "
            "changed, or it belongs to another row or column"
        ) from None
