"""The ledger under real parallel connections: no overdraft, no deadlock, no waiting on hot
accounts, and every transfer balanced afterwards."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg import errors

from payguard.reconcile import reconcile

WORKERS = 8


@pytest.fixture
def accounts(db, make_user):
    """Two funded wallets (500 each) and the clearing account, in USD."""
    alice, bob = make_user(), make_user()
    row = db.execute(
        "select private.ledger_wallet(%s, 'USD'), private.ledger_wallet(%s, 'USD'), "
        "private.ledger_system_account('processor_clearing', 'USD')",
        (alice, bob),
    ).fetchone()
    assert row is not None
    wallet_a, wallet_b, clearing = row
    for wallet in (wallet_a, wallet_b):
        db.execute(
            "select private.ledger_transfer('test_deposit', %s, %s, 500, 'USD')",
            (clearing, wallet),
        )
    return {"a": wallet_a, "b": wallet_b, "clearing": clearing}


def transfer_on(
    conn: psycopg.Connection, debit: uuid.UUID, credit: uuid.UUID, amount: int, pending: bool
) -> str | None:
    """One transfer in its own transaction (conn is in autocommit); returns 'ok', or the
    SQLSTATE that refused it."""
    try:
        conn.execute(
            "select private.ledger_transfer('test', %s, %s, %s, 'USD', pending => %s)",
            (debit, credit, amount, pending),
        )
    except psycopg.Error as exc:
        return exc.sqlstate
    return "ok"


def transfer(url: str, debit: uuid.UUID, credit: uuid.UUID, amount: int, pending: bool = False):
    """One transfer on a connection of its own; returns 'ok', or the SQLSTATE that refused it."""
    with psycopg.connect(url, autocommit=True) as conn:
        return transfer_on(conn, debit, credit, amount, pending)


def concurrently(
    url: str, moves: list[tuple[uuid.UUID, uuid.UUID]], amount: int, pending: bool = False
) -> list[str | None]:
    """The transfers (debit, credit) over WORKERS connections at once, each connection taking
    its share one after another, each transfer its own transaction; their outcomes. Each
    connection is kept for all its transfers, as a pool keeps it, so that the transfers follow
    one another at once rather than each wait for a new connection (and backend)."""

    def work(share: list[tuple[uuid.UUID, uuid.UUID]]) -> list[str | None]:
        with psycopg.connect(url, autocommit=True) as conn:
            return [transfer_on(conn, debit, credit, amount, pending) for debit, credit in share]

    with ThreadPoolExecutor(WORKERS) as pool:
        shares = pool.map(work, [moves[worker::WORKERS] for worker in range(WORKERS)])
        return [outcome for share in shares for outcome in share]


def test_500_transfers_each_way_never_deadlock(database_url, db, accounts):
    moves = [(accounts["a"], accounts["b"])] * 500 + [(accounts["b"], accounts["a"])] * 500
    random.Random(5).shuffle(moves)
    outcomes = concurrently(database_url, moves, 1)
    assert outcomes.count("ok") == 1000, {o for o in outcomes if o != "ok"}
    balances = dict(
        db.execute(
            "select account_id, credits_posted - debits_posted "
            "from private.ledger_limited_balances where account_id = any(%s)",
            ([accounts["a"], accounts["b"]],),
        ).fetchall()
    )
    assert balances == {accounts["a"]: 500, accounts["b"]: 500}
    assert reconcile(db.info.dsn) == []


def test_concurrent_reservations_never_overdraw(database_url, db, accounts):
    # 20 payouts of 60 from a wallet holding 500: at most 8 fit.
    outcomes = concurrently(database_url, [(accounts["a"], accounts["clearing"])] * 20, 60, True)
    assert outcomes.count("ok") == 8
    assert outcomes.count("PT409") == 12
    row = db.execute(
        "select debits_pending, credits_posted from private.ledger_limited_balances "
        "where account_id = %s",
        (accounts["a"],),
    ).fetchone()
    assert row == (480, 500)
    assert reconcile(db.info.dsn) == []


def test_hot_accounts_are_never_a_point_of_serialization(database_url, accounts, make_user):
    """A transfer through the clearing account does not wait for another one, still open."""
    other_wallet = None
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select private.ledger_wallet(%s, 'USD')", (make_user(),)).fetchone()
        assert row is not None
        other_wallet = row[0]
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        first.execute(
            "select private.ledger_transfer('test', %s, %s, 7, 'USD')",
            (accounts["clearing"], accounts["a"]),
        )
        second.execute("set lock_timeout = '200ms'")
        second.execute(
            "select private.ledger_transfer('test', %s, %s, 9, 'USD')",
            (accounts["clearing"], other_wallet),
        )
        second.commit()
        first.commit()


def test_a_limited_account_is_locked_while_it_changes(database_url, accounts):
    """The same wallet, by contrast, waits: its balance is checked under its row lock."""
    with psycopg.connect(database_url) as first, psycopg.connect(database_url) as second:
        first.execute(
            "select private.ledger_transfer('test', %s, %s, 7, 'USD')",
            (accounts["a"], accounts["clearing"]),
        )
        second.execute("set lock_timeout = '200ms'")
        with pytest.raises(errors.LockNotAvailable):
            second.execute(
                "select private.ledger_transfer('test', %s, %s, 9, 'USD')",
                (accounts["a"], accounts["clearing"]),
            )
        first.rollback()


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_money_moves_only_at_read_committed(database_url, db, accounts, level):
    """At these levels a transaction keeps its first snapshot after it gets the wallet's lock,
    and would read the wallet's balances from before a transfer it waited for: refused."""
    with psycopg.connect(database_url) as stale:
        stale.execute(f"set transaction isolation level {level}")
        stale.execute("select 1")
        assert transfer(database_url, accounts["a"], accounts["clearing"], 100) == "ok"
        with pytest.raises(
            errors.FeatureNotSupported,
            match=f"money moves only at read committed isolation, not {level}",
        ):
            stale.execute(
                "select private.ledger_transfer('test', %s, %s, 450, 'USD')",
                (accounts["a"], accounts["clearing"]),
            )
    row = db.execute(
        "select account_version, credits_posted - debits_posted "
        "from private.ledger_limited_balances where account_id = %s",
        (accounts["a"],),
    ).fetchone()
    assert row == (2, 400)
    assert reconcile(db.info.dsn) == []
