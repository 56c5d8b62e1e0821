"""The cost of sealing processor tokens: envelopes and lookups per second in each runtime, and
`keys rotate` rows per second, each against a baseline measured in the same run.

- Envelopes, Python (`cryptography`) and Deno (WebCrypto, supabase/functions/_bench/tokens.ts):
  encrypt, decrypt and lookup per second over the same tokens, against AES-256-GCM of the same
  tokens under one fixed key in the same runtime (what the token would cost without its own
  data key and key wrap), in alternating rounds.
- Rotation: `payguard.token_rotation.rotate` over `rows` payment methods (and their users'
  customers), sealed under one key as the functions store them, re-sealed under a new key,
  against the same batches re-written with the values they hold (same locks, triggers and
  audit rows, no cryptography).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payguard.envelope import KeySet, decrypt, encrypt
from payguard.errors import PayguardError
from payguard.token_index import lookup
from payguard.token_keys import new_entry
from payguard.token_rotation import rotate

TABLE, COLUMN = "payment_methods", "processor_payment_method_id"
BATCH = 500


@dataclass(frozen=True)
class RuntimeSpeed:
    """Operations per second in one runtime, and its baseline (bare AES-256-GCM)."""

    runtime: str
    tokens: int
    encrypt_per_s: float
    decrypt_per_s: float
    lookup_per_s: float
    bare_gcm_per_s: float


@dataclass(frozen=True)
class RotationSpeed:
    rows: int
    reseal_rows_per_s: float  # under a new key: opened, checked against the lookup, sealed
    rewrite_rows_per_s: float  # the baseline: the same batches, the same values written back

    @property
    def reseal_ratio(self) -> float:
        return self.reseal_rows_per_s / self.rewrite_rows_per_s


@dataclass(frozen=True)
class TokenBench:
    runtimes: list[RuntimeSpeed]
    rotation: RotationSpeed | None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"runtimes": [asdict(r) for r in self.runtimes]}
        if self.rotation is not None:
            found["rotation"] = {
                **asdict(self.rotation),
                "reseal_ratio": self.rotation.reseal_ratio,
            }
        return found


def tokens(count: int) -> list[str]:
    return [
        f"pm_{secrets.token_urlsafe(18).replace('-', 'a').replace('_', 'b')}" for _ in range(count)
    ]


def _rate(count: int, work: Callable[[], None], rounds: int = 3) -> float:
    """`count` operations per the best of `rounds` timings of `work`."""
    best = min(_timed(work) for _ in range(rounds))
    return count / best


def _timed(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def python_speed(count: int) -> RuntimeSpeed:
    keys = KeySet.parse(new_entry("k-bench"))
    index = KeySet.parse(new_entry("i-bench"))
    values = tokens(count)
    rows = [f"00000000-0000-4000-8000-{n:012d}" for n in range(count)]
    sealed = [
        encrypt(keys, v, table=TABLE, column=COLUMN, row_id=r)
        for v, r in zip(values, rows, strict=True)
    ]
    gcm, nonce = AESGCM(secrets.token_bytes(32)), secrets.token_bytes(12)

    def encrypt_all() -> None:
        for value, row in zip(values, rows, strict=True):
            encrypt(keys, value, table=TABLE, column=COLUMN, row_id=row)

    def decrypt_all() -> None:
        for envelope, row in zip(sealed, rows, strict=True):
            decrypt(keys, envelope, table=TABLE, column=COLUMN, row_id=row)

    def lookup_all() -> None:
        for value in values:
            lookup(index, value)

    def bare_all() -> None:
        for value, row in zip(values, rows, strict=True):
            gcm.encrypt(nonce, value.encode(), row.encode())

    # Alternating rounds: each measure and the baseline see the same machine.
    return RuntimeSpeed(
        "python",
        count,
        encrypt_per_s=_rate(count, encrypt_all),
        decrypt_per_s=_rate(count, decrypt_all),
        lookup_per_s=_rate(count, lookup_all),
        bare_gcm_per_s=_rate(count, bare_all),
    )


def deno_speed(deno: Path, functions_dir: Path, count: int) -> RuntimeSpeed:
    """The same measures by supabase/functions/_bench/tokens.ts, run by `deno`."""
    done = subprocess.run(
        [str(deno), "run", "--quiet", "--frozen", "_bench/tokens.ts", str(count)],
        cwd=functions_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PayguardError(f"the Deno token benchmark failed: {done.stderr.strip()[-500:]}")
    found = json.loads(done.stdout)
    return RuntimeSpeed(
        "deno",
        count,
        **{
            k: float(found[k])
            for k in ("encrypt_per_s", "decrypt_per_s", "lookup_per_s", "bare_gcm_per_s")
        },
    )


def seed_payment_methods(
    url: str, rows: int, keys: KeySet, index: KeySet, per_user: int = 100
) -> None:
    """`rows` payment methods, `per_user` to a user, each user with a customer, sealed under
    `keys` with their lookups under `index`, as the functions store them."""
    users = [str(uuid.uuid4()) for _ in range(-(-rows // per_user))]
    customers = [f"cus_Bench{n:08d}" for n in range(len(users))]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) "
            "select u, 'authenticated', 'authenticated', 'bench-tokens-' || u || '@example.test' "
            "from unnest(%s::uuid[]) as u",
            (users,),
        )
        conn.execute(
            "insert into public.processor_customers "
            "(user_id, processor_customer_id_sealed, processor_customer_id_lookup) "
            "select * from unnest(%s::uuid[], %s::jsonb[], %s::text[])",
            (
                users,
                [
                    json.dumps(
                        encrypt(
                            keys,
                            c,
                            table="processor_customers",
                            column="processor_customer_id",
                            row_id=u,
                        )
                    )
                    for u, c in zip(users, customers, strict=True)
                ],
                [lookup(index, c) for c in customers],
            ),
        )
        for start in range(0, rows, 10_000):
            ids = [str(uuid.uuid4()) for _ in range(start, min(rows, start + 10_000))]
            owners = [(start + n) // per_user for n in range(len(ids))]
            cards = [f"pm_Bench{start + n:010d}" for n in range(len(ids))]
            conn.execute(
                "insert into public.payment_methods (id, user_id, type, "
                "processor_payment_method_id_sealed, processor_payment_method_id_lookup, "
                "processor_customer_id_lookup) "
                "select v.id, v.user_id, 'credit_card', v.sealed, v.lookup, v.customer "
                "from unnest(%s::uuid[], %s::uuid[], %s::jsonb[], %s::text[], %s::text[]) "
                "as v (id, user_id, sealed, lookup, customer)",
                (
                    ids,
                    [users[o] for o in owners],
                    [
                        json.dumps(encrypt(keys, card, table=TABLE, column=COLUMN, row_id=i))
                        for i, card in zip(ids, cards, strict=True)
                    ],
                    [lookup(index, card) for card in cards],
                    [lookup(index, customers[o]) for o in owners],
                ),
            )


def rewrite_rate(url: str, rows: int) -> float:
    """The baseline: every payment method's sealed value written back as it is, in batches
    of BATCH rows, each a transaction that locks them first, as a rotation does."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        after = None
        while True:
            with conn.transaction():
                found = conn.execute(
                    "select id, processor_payment_method_id_sealed from public.payment_methods "
                    "where %(after)s::uuid is null or id > %(after)s::uuid "
                    "order by id limit %(size)s for update",
                    {"after": after, "size": BATCH},
                ).fetchall()
                if not found:
                    break
                conn.execute(
                    "update public.payment_methods as t "
                    "set processor_payment_method_id_sealed = v.sealed "
                    "from unnest(%s::uuid[], %s::jsonb[]) as v (id, sealed) where t.id = v.id",
                    ([r[0] for r in found], [json.dumps(r[1]) for r in found]),
                )
                after = str(found[-1][0])
    return rows / (time.perf_counter() - started)


def rotation_speed(url: str, rows: int) -> RotationSpeed:
    index = KeySet.parse(new_entry("i-bench"))
    old, new = new_entry("k-old"), new_entry("k-new")
    seed_payment_methods(url, rows, KeySet.parse(old), index)
    rewrite = rewrite_rate(url, rows)
    started = time.perf_counter()
    rotate(url, KeySet.parse(f"{new},{old}"), index, batch_size=BATCH)
    reseal_seconds = time.perf_counter() - started
    return RotationSpeed(rows, rows / reseal_seconds, rewrite)
