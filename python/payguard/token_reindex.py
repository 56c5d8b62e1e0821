"""Rotating the index key: `payguard keys reindex`.

Every lookup moves to the current index key (the first of the index key set): each sealed
token is opened, checked against its lookup under the key that lookup names, and looked up
again; the new lookup is written on its row and on every row that refers to the same token by
the old one (a payment method's customer, a payout method's account, a funding attempt's card
and customer), in batches, each one transaction that locks its rows. The database lets only
the tables' owner change a lookup, in a transaction that names the target key
(`payguard.token_reindex`: private.token_reindexing). Each run is a row of
private.token_key_rotations of kind `index`, resumed like a rotation when it was interrupted.

A token known by its lookup alone (a connected account no one onboarded yet, a funding attempt
whose payment method is gone) cannot be looked up again: it keeps its lookup under the older
key, and is counted as left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from payguard.db import connect
from payguard.envelope import EnvelopeError, KeySet, decrypt
from payguard.token_columns import SEALED_COLUMNS, TOKEN_COLUMNS, TokenColumn
from payguard.token_index import lookup
from payguard.token_keys import check as check_keys
from payguard.token_rotation import DEFAULT_BATCH, RotationError

KIND = "index"


@dataclass
class ReindexRun:
    """What one `keys reindex` did: the run (new or resumed), the lookups it moved, by column,
    and the lookups left under another key (tokens known by their lookup alone)."""

    rotation_id: str
    target_kid: str
    resumed: bool
    moved: int = 0
    by_column: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rotation_id": self.rotation_id,
            "target_kid": self.target_kid,
            "resumed": self.resumed,
            "lookups_moved": self.moved,
            "by_column": self.by_column,
            "left": self.left,
            "seconds": round(self.seconds, 3),
        }


def referring(home: TokenColumn) -> tuple[TokenColumn, ...]:
    """The columns that refer to `home`'s token by its lookup alone."""
    return tuple(c for c in TOKEN_COLUMNS if c.sealed is None and c.plain == home.plain)


def _elsewhere(column: TokenColumn, under: bool = False) -> sql.Composable:
    """`column`'s rows whose lookup is under another key than %(kid)s (`under`: that key)."""
    return sql.SQL("split_part({l}::text, ':', 1) {op} %(kid)s").format(
        l=sql.Identifier(column.lookup), op=sql.SQL("=" if under else "<>")
    )


def _count(
    conn: psycopg.Connection,
    column: TokenColumn,
    kid: str,
    sealed_only: bool,
    under: bool = False,
) -> int:
    where = _elsewhere(column, under)
    if sealed_only and column.sealed:
        where = sql.SQL("{w} and {s} is not null").format(w=where, s=sql.Identifier(column.sealed))
    row = conn.execute(
        sql.SQL("select count(*) from {t} where {w}").format(t=column.relation, w=where),
        {"kid": kid},
    ).fetchone()
    return int(row[0]) if row else 0


def left_under_other_keys(url: str, kid: str) -> dict[str, int]:
    """The lookup columns with rows under another index key than `kid`, and how many."""
    with connect(url) as conn:
        counts = {c.name: _count(conn, c, kid, sealed_only=False) for c in TOKEN_COLUMNS}
    return {name: count for name, count in counts.items() if count}


def lookups_under(url: str, kid: str) -> dict[str, int]:
    """The lookup columns with rows under index key `kid`, and how many."""
    with connect(url) as conn:
        counts = {
            c.name: _count(conn, c, kid, sealed_only=False, under=True) for c in TOKEN_COLUMNS
        }
    return {name: count for name, count in counts.items() if count}


def _start(conn: psycopg.Connection, kid: str) -> tuple[str, bool]:
    """The running index rotation to `kid` (resumed), or a new one."""
    with conn.transaction():
        running = conn.execute(
            "select id::text, target_kid, kind from private.token_key_rotations "
            "where status = 'running' for update"
        ).fetchone()
        if running is not None:
            if (running[1], running[2]) != (kid, KIND):
                raise RotationError(
                    f"a rotation of kind {running[2]} to key {running[1]} is running "
                    f"(id {running[0]}): finish it first"
                )
            return str(running[0]), True
        created = conn.execute(
            "insert into private.token_key_rotations (target_kid, kind) values (%s, %s) "
            "returning id::text",
            (kid, KIND),
        ).fetchone()
        assert created is not None
        return str(created[0]), False


def _new_lookup(
    column: TokenColumn,
    key: str,
    sealed: dict[str, Any],
    current: str,
    envelope_keys: KeySet,
    index_keys: KeySet,
) -> str:
    """The lookup of the row's token under the current index key, the token checked against
    the lookup it holds now."""
    where = f"{column.name} of row {key}"
    try:
        token = decrypt(envelope_keys, sealed, table=column.table, column=column.plain, row_id=key)
    except EnvelopeError as exc:
        raise RotationError(f"{where}: its sealed value does not open: {exc}") from None
    if not column.form.fullmatch(token):
        raise RotationError(f"{where}: it holds no token of the column's form")
    old_kid = current.partition(":")[0]
    if old_kid not in index_keys.keys:
        raise RotationError(
            f"{where}: its lookup is under index key {old_kid}, which the keys given do not "
            "hold: give the old index key too (after the new one), so that each lookup is "
            "checked before it moves"
        )
    if lookup(index_keys, token, old_kid) != current:
        raise RotationError(f"{where}: its lookup is not its token's")
    return lookup(index_keys, token)


def _batch(
    conn: psycopg.Connection,
    home: TokenColumn,
    rotation_id: str,
    envelope_keys: KeySet,
    index_keys: KeySet,
    size: int,
) -> tuple[int, dict[str, int]]:
    """Move one batch of `home`'s lookups (and those that refer to the same tokens) to the
    current index key, in one transaction; the rows moved, by column."""
    key, lookup_column = sql.Identifier(home.key), sql.Identifier(home.lookup)
    kid = index_keys.current
    with conn.transaction():
        # Functions that hold two index keys find a token's stored lookup under a shared hold
        # of this lock, and write by it in the same transaction: a batch never moves it between.
        conn.execute("select pg_advisory_xact_lock(hashtext('payguard.token_reindex'))")
        conn.execute("select set_config('payguard.token_reindex', %s, true)", (kid,))
        rows = conn.execute(
            sql.SQL(
                "select {k}::text, {s}, {l}::text from {t} where {w} and {s} is not null "
                "order by {k} limit %(size)s for update"
            ).format(
                k=key,
                s=sql.Identifier(home.sealed or ""),
                l=lookup_column,
                t=home.relation,
                w=_elsewhere(home),
            ),
            {"kid": kid, "size": size},
        ).fetchall()
        if not rows:
            return 0, {}
        keys, old, new = [], [], []
        for row_key, sealed, current in rows:
            keys.append(row_key)
            old.append(current)
            new.append(_new_lookup(home, row_key, sealed, current, envelope_keys, index_keys))
        conn.execute(
            sql.SQL(
                "update {t} as t set {l} = v.lookup from unnest(%s::uuid[], %s::text[]) "
                "as v (key, lookup) where t.{k} = v.key"
            ).format(t=home.relation, l=lookup_column, k=key),
            (keys, new),
        )
        moved = {home.name: len(rows)}
        for column in referring(home):
            result = conn.execute(
                sql.SQL(
                    "update {t} as t set {l} = v.new from unnest(%s::text[], %s::text[]) "
                    "as v (old, new) where t.{l} = v.old"
                ).format(t=column.relation, l=sql.Identifier(column.lookup)),
                (old, new),
            )
            if result.rowcount:
                moved[column.name] = result.rowcount
        conn.execute(
            "update private.token_key_rotations set tokens_sealed = tokens_sealed + %s "
            "where id = %s",
            (sum(moved.values()), rotation_id),
        )
        return len(rows), moved


def reindex(
    url: str,
    envelope_keys: KeySet,
    index_keys: KeySet,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ReindexRun:
    """Move every lookup to `index_keys.current` (resuming a run to the same key); `on_start`
    gets the count of sealed tokens still to move, `on_batch` each batch's."""
    if batch_size < 1:
        raise RotationError("a batch holds at least one row")
    if check_keys(envelope_keys, index_keys).shared:
        raise RotationError("one key serves both the envelopes and the index: give each its own")
    kid = index_keys.current
    started = time.perf_counter()
    with connect(url) as conn:
        rotation_id, resumed = _start(conn, kid)
        run = ReindexRun(rotation_id, kid, resumed)
        if on_start is not None:
            on_start(sum(_count(conn, c, kid, sealed_only=True) for c in SEALED_COLUMNS))
        for home in SEALED_COLUMNS:
            while True:
                done, moved = _batch(conn, home, rotation_id, envelope_keys, index_keys, batch_size)
                if not done:
                    break
                run.moved += sum(moved.values())
                for name, count in moved.items():
                    run.by_column[name] = run.by_column.get(name, 0) + count
                if on_batch is not None:
                    on_batch(done)
        with conn.transaction():
            conn.execute(
                "update private.token_key_rotations set status = 'finished', finished_at = now() "
                "where id = %s",
                (rotation_id,),
            )
    run.left = left_under_other_keys(url, kid)
    run.seconds = time.perf_counter() - started
    return run
