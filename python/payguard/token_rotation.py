"""Key rotation of processor tokens: `payguard keys rotate` and `keys status`.

A rotation re-seals every sealed token under the current envelope key (the first of the key
set), column by column (payguard.token_columns), in batches. On a database the contract
migration (20261205170000) has not reached yet, where the plain-text columns still exist, it
also seals the tokens held only in the clear and fills the lookups missing: that is what lets
the contract migration drop those columns; and it replaces each token that a stored Stripe
event still names in the clear with its lookup under the current index key, as the
stripe-webhook function passes events now (migration 20261205190000 refuses a database
whose stored events name one). Each batch is one short transaction that locks its
rows, so the system keeps serving, and commits with the run's count of tokens sealed
(private.token_key_rotations, audited). Killed half way, a rotation loses only its open batch;
run again, it resumes the run it finds, from the rows still to do.

Every token is opened and checked before it is sealed again: its envelope must open for its
table, column and row under one of the keys given, hold a token of the column's form (so a
value is never sealed twice), agree with the plain column where one is left, and with its
lookup. Anything else stops the rotation with the row's key and the reason, never a token.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from payguard.db import connect
from payguard.envelope import EnvelopeError, KeySet, decrypt, encrypt
from payguard.errors import PayguardError
from payguard.token_columns import SEALED_COLUMNS, TOKEN_COLUMNS, TokenColumn
from payguard.token_index import lookup
from payguard.token_keys import check as check_keys
from payguard.token_scan import TOKEN_PATTERN

DEFAULT_BATCH = 500

# A token in a stored event's strings: the scan's pattern, private.holds_processor_token's.
PAYLOAD_TOKEN = re.compile(TOKEN_PATTERN)
_HOLDS_TOKEN = sql.SQL(
    "exists (select from jsonb_path_query(payload, 'strict $.**') as i "
    "where jsonb_typeof(i) = 'string' and i #>> '{}' ~ %(pattern)s)"
)


class RotationError(PayguardError):
    """A rotation that cannot start, or a row it cannot re-seal (named by its key)."""


@dataclass(frozen=True)
class ColumnStatus:
    """One token column: its rows, those still to seal or look up, and the rows per key id."""

    name: str
    rows: int
    to_do: int
    sealed_by_kid: dict[str, int]
    lookups_by_kid: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "column": self.name,
            "rows": self.rows,
            "to_do": self.to_do,
            "sealed_by_kid": self.sealed_by_kid,
            "lookups_by_kid": self.lookups_by_kid,
        }


@dataclass
class RotationRun:
    """What one `keys rotate` did: the run (new or resumed), the tokens it sealed, by column."""

    rotation_id: str
    target_kid: str
    resumed: bool
    sealed: int = 0
    by_column: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rotation_id": self.rotation_id,
            "target_kid": self.target_kid,
            "resumed": self.resumed,
            "tokens_sealed": self.sealed,
            "by_column": self.by_column,
            "seconds": round(self.seconds, 3),
        }


def plain_columns(conn: psycopg.Connection) -> frozenset[str]:
    """The token columns whose plain-text column still exists (before the contract
    migration), by name."""
    rows = conn.execute(
        "select table_name || '.' || column_name from information_schema.columns "
        "where table_schema = 'public'"
    ).fetchall()
    present = {str(row[0]) for row in rows}
    return frozenset(column.name for column in TOKEN_COLUMNS if column.name in present)


def _plain(column: TokenColumn, plains: frozenset[str]) -> sql.Composable:
    """The plain-text column of `column`, or null where it is gone."""
    return sql.Identifier(column.plain) if column.name in plains else sql.SQL("null::text")


def _pending(column: TokenColumn, plains: frozenset[str]) -> sql.Composable:
    """The rows of `column` that a rotation to %(kid)s still has to do."""
    plain, lookup_column = _plain(column, plains), sql.Identifier(column.lookup)
    missing_lookup = sql.SQL("({l} is null and {p} is not null)").format(l=lookup_column, p=plain)
    if column.sealed is None:
        return missing_lookup
    sealed = sql.Identifier(column.sealed)
    return sql.SQL("({s} is null and {p} is not null) or ({s} ->> 'kid') <> %(kid)s or {m}").format(
        s=sealed, p=plain, m=missing_lookup
    )


def status(url: str) -> list[ColumnStatus]:
    """Every token column: its rows, the rows a rotation would still do (sealed under another
    key than the newest kid seen is not counted here: `keys status` shows the kids), and the
    rows per envelope key id and per index key id."""
    found = []
    with connect(url) as conn:
        plains = plain_columns(conn)
        for column in TOKEN_COLUMNS:
            plain, lookup_column = _plain(column, plains), sql.Identifier(column.lookup)
            unsealed = (
                sql.SQL("{s} is null").format(s=sql.Identifier(column.sealed))
                if column.sealed
                else sql.SQL("false")
            )
            row = conn.execute(
                sql.SQL(
                    "select count(*), count(*) filter (where {p} is not null "
                    "and ({l} is null or {u})) from {t}"
                ).format(p=plain, l=lookup_column, u=unsealed, t=column.relation)
            ).fetchone()
            assert row is not None
            sealed_by_kid: dict[str, int] = {}
            if column.sealed:
                sealed_by_kid = dict(
                    conn.execute(
                        sql.SQL(
                            "select {s} ->> 'kid', count(*) from {t} where {s} is not null "
                            "group by 1 order by 1"
                        ).format(s=sql.Identifier(column.sealed), t=column.relation)
                    ).fetchall()
                )
            lookups_by_kid: dict[str, int] = dict(
                conn.execute(
                    sql.SQL(
                        "select split_part({l}::text, ':', 1), count(*) from {t} "
                        "where {l} is not null group by 1 order by 1"
                    ).format(l=lookup_column, t=column.relation)
                ).fetchall()
            )
            found.append(
                ColumnStatus(column.name, int(row[0]), int(row[1]), sealed_by_kid, lookups_by_kid)
            )
    return found


def rows_sealed_under(url: str, kid: str) -> dict[str, int]:
    """The sealed columns with rows under envelope key `kid`, and how many."""
    with connect(url) as conn:
        counts = {
            column.name: int(
                conn.execute(
                    sql.SQL("select count(*) from {t} where {s} ->> 'kid' = %s").format(
                        t=column.relation, s=sql.Identifier(column.sealed or "")
                    ),
                    (kid,),
                ).fetchone()[0]  # type: ignore[index]
            )
            for column in SEALED_COLUMNS
        }
    return {name: count for name, count in counts.items() if count}


def _start(conn: psycopg.Connection, kid: str) -> tuple[str, bool]:
    """The running rotation to `kid` (resumed), or a new one; another running is an error."""
    with conn.transaction():
        # A database deployed before index rotations (20261205180000) has envelope runs only.
        kinds = conn.execute(
            "select count(*) from information_schema.columns where table_schema = 'private' "
            "and table_name = 'token_key_rotations' and column_name = 'kind'"
        ).fetchone()
        kind = sql.SQL("kind" if kinds and kinds[0] else "'envelope'")
        running = conn.execute(
            sql.SQL(
                "select id::text, target_kid, {kind} from private.token_key_rotations "
                "where status = 'running' for update"
            ).format(kind=kind)
        ).fetchone()
        if running is not None:
            if running[2] != "envelope":
                raise RotationError(
                    f"a move of the lookups to index key {running[1]} is running (id "
                    f"{running[0]}): finish it first (payguard keys reindex)"
                )
            if running[1] != kid:
                raise RotationError(
                    f"a rotation to key {running[1]} is running (id {running[0]}): finish it "
                    f"first, with {running[1]} as the current key"
                )
            return str(running[0]), True
        created = conn.execute(
            "insert into private.token_key_rotations (target_kid) values (%s) returning id::text",
            (kid,),
        ).fetchone()
        assert created is not None
        return str(created[0]), False


def to_do(url: str, kid: str) -> int:
    """How many token values a rotation to `kid` would still seal or look up."""
    with connect(url) as conn:
        plains = plain_columns(conn)
        return sum(_count_pending(conn, column, kid, plains) for column in TOKEN_COLUMNS)


def _count_pending(
    conn: psycopg.Connection, column: TokenColumn, kid: str, plains: frozenset[str]
) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from {t} where {w}").format(
            t=column.relation, w=_pending(column, plains)
        ),
        {"kid": kid},
    ).fetchone()
    return int(row[0]) if row else 0


def _resealed(
    column: TokenColumn,
    key: str,
    plain: str | None,
    sealed: dict[str, Any] | None,
    current_lookup: str | None,
    envelope_keys: KeySet,
    index_keys: KeySet,
) -> tuple[dict[str, Any] | None, str]:
    """The row's new sealed value (None: the column keeps none) and its lookup, the token
    checked against everything the row holds."""
    where = f"{column.name} of row {key}"
    token = plain
    if sealed is not None:
        try:
            opened = decrypt(
                envelope_keys, sealed, table=column.table, column=column.plain, row_id=key
            )
        except EnvelopeError as exc:
            raise RotationError(f"{where}: its sealed value does not open: {exc}") from None
        if plain is not None and opened != plain:
            raise RotationError(f"{where}: its sealed value is not the token in {column.plain}")
        token = opened
    if token is None or not column.form.fullmatch(token):
        raise RotationError(f"{where}: it holds no token of the column's form")
    if current_lookup is not None:
        kid = current_lookup.partition(":")[0]
        if kid in index_keys.keys and lookup(index_keys, token, kid) != current_lookup:
            raise RotationError(f"{where}: its lookup is not its token's")
    new_lookup = current_lookup or lookup(index_keys, token)
    if column.sealed is None:
        return None, new_lookup
    if sealed is not None and sealed.get("kid") == envelope_keys.current:
        return sealed, new_lookup
    return (
        encrypt(envelope_keys, token, table=column.table, column=column.plain, row_id=key),
        new_lookup,
    )


def _batch(
    conn: psycopg.Connection,
    column: TokenColumn,
    rotation_id: str,
    envelope_keys: KeySet,
    index_keys: KeySet,
    after: str | None,
    size: int,
    plains: frozenset[str],
) -> tuple[int, str | None]:
    """Re-seal one batch of `column`'s pending rows after key `after`, in one transaction;
    the count done and the last key (None: the column is done)."""
    key = sql.Identifier(column.key)
    sealed_column = sql.Identifier(column.sealed) if column.sealed else sql.SQL("null::jsonb")
    with conn.transaction():
        rows = conn.execute(
            sql.SQL(
                "select {k}::text, {p}, {s}, {l}::text from {t} where ({w}) {after} "
                "order by {k} limit %(size)s for update"
            ).format(
                k=key,
                p=_plain(column, plains),
                s=sealed_column,
                l=sql.Identifier(column.lookup),
                t=column.relation,
                w=_pending(column, plains),
                after=sql.SQL("and {k} > %(after)s::uuid").format(k=key) if after else sql.SQL(""),
            ),
            {"kid": envelope_keys.current, "after": after, "size": size},
        ).fetchall()
        if not rows:
            return 0, None
        keys, sealed_values, lookups = [], [], []
        for row_key, plain, sealed, current_lookup in rows:
            new_sealed, new_lookup = _resealed(
                column, row_key, plain, sealed, current_lookup, envelope_keys, index_keys
            )
            keys.append(row_key)
            sealed_values.append(Jsonb(new_sealed) if new_sealed is not None else None)
            lookups.append(new_lookup)
        assignments = [sql.SQL("{l} = v.lookup").format(l=sql.Identifier(column.lookup))]
        if column.sealed:
            assignments.insert(0, sql.SQL("{s} = v.sealed").format(s=sql.Identifier(column.sealed)))
        conn.execute(
            sql.SQL(
                "update {t} as t set {a} from unnest(%s::uuid[], %s::jsonb[], %s::text[]) "
                "as v (key, sealed, lookup) where t.{k} = v.key"
            ).format(t=column.relation, a=sql.SQL(", ").join(assignments), k=key),
            (keys, sealed_values, lookups),
        )
        conn.execute(
            "update private.token_key_rotations set tokens_sealed = tokens_sealed + %s "
            "where id = %s",
            (len(rows), rotation_id),
        )
        return len(rows), str(rows[-1][0])


def with_lookups(value: Any, index_keys: KeySet) -> Any:
    """`value` (a stored event) with every token in its strings (keys too) replaced by its
    lookup under the current index key."""
    if isinstance(value, str):
        return PAYLOAD_TOKEN.sub(lambda m: lookup(index_keys, m.group(0)), value)
    if isinstance(value, list):
        return [with_lookups(item, index_keys) for item in value]
    if isinstance(value, dict):
        return {
            with_lookups(key, index_keys): with_lookups(item, index_keys)
            for key, item in value.items()
        }
    return value


def _payloads_pending(conn: psycopg.Connection) -> int:
    row = conn.execute(
        sql.SQL("select count(*) from public.webhook_events where {h}").format(h=_HOLDS_TOKEN),
        {"pattern": PAYLOAD_TOKEN.pattern},
    ).fetchone()
    return int(row[0]) if row else 0


def _payload_batch(
    conn: psycopg.Connection, rotation_id: str, index_keys: KeySet, size: int
) -> int:
    """Replace the tokens of one batch of stored events with their lookups; the count."""
    with conn.transaction():
        rows = conn.execute(
            sql.SQL(
                "select id, payload from public.webhook_events where {h} "
                "order by id limit %(size)s for update"
            ).format(h=_HOLDS_TOKEN),
            {"pattern": PAYLOAD_TOKEN.pattern, "size": size},
        ).fetchall()
        for event_id, payload in rows:
            conn.execute(
                "update public.webhook_events set payload = %s where id = %s",
                (Jsonb(with_lookups(payload, index_keys)), event_id),
            )
        if rows:
            conn.execute(
                "update private.token_key_rotations set tokens_sealed = tokens_sealed + %s "
                "where id = %s",
                (len(rows), rotation_id),
            )
        return len(rows)


def rotate(
    url: str,
    envelope_keys: KeySet,
    index_keys: KeySet,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> RotationRun:
    """Re-seal every token under `envelope_keys.current` (resuming a run to the same key),
    seal those held only in the clear and fill missing lookups; `on_start` gets the count
    still to do, `on_batch` each batch's."""
    if batch_size < 1:
        raise RotationError("a batch holds at least one row")
    if check_keys(envelope_keys, index_keys).shared:
        raise RotationError("one key serves both the envelopes and the index: give each its own")
    started = time.perf_counter()
    with connect(url) as conn:
        rotation_id, resumed = _start(conn, envelope_keys.current)
        run = RotationRun(rotation_id, envelope_keys.current, resumed)
        plains = plain_columns(conn)
        if on_start is not None:
            on_start(
                sum(_count_pending(conn, c, envelope_keys.current, plains) for c in TOKEN_COLUMNS)
                + _payloads_pending(conn)
            )
        for column in TOKEN_COLUMNS:
            after: str | None = None
            while True:
                done, after = _batch(
                    conn, column, rotation_id, envelope_keys, index_keys, after, batch_size, plains
                )
                if after is None:
                    break
                run.sealed += done
                run.by_column[column.name] = run.by_column.get(column.name, 0) + done
                if on_batch is not None:
                    on_batch(done)
        while done := _payload_batch(conn, rotation_id, index_keys, batch_size):
            run.sealed += done
            run.by_column["webhook_events.payload"] = (
                run.by_column.get("webhook_events.payload", 0) + done
            )
            if on_batch is not None:
                on_batch(done)
        with conn.transaction():
            left = sum(
                _count_pending(conn, c, envelope_keys.current, plains) for c in TOKEN_COLUMNS
            ) + _payloads_pending(conn)
            if left:
                raise RotationError(
                    f"{left} token values were written during the rotation without being sealed "
                    "under its key (a runtime that still seals under an older key, or a row the "
                    "database wrote in the clear): run it again"
                )
            conn.execute(
                "update private.token_key_rotations set status = 'finished', finished_at = now() "
                "where id = %s",
                (rotation_id,),
            )
    run.seconds = time.perf_counter() - started
    return run
