"""Money under concurrency, through the app's own path (authenticator, RLS, RPCs): one
release of many, withdrawals that never overdraw, a fund racing a cancel. No deadlock
reaches a client, and the ledger balances afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import psycopg
import pytest

from payguard.reconcile import reconcile
from payguard.testing.client import ApiError, AppClient
from payguard.testing.tokens import add_payout_method

WORKERS = 8


@pytest.fixture(scope="module", autouse=True)
def no_holds_nor_velocity_limits(database_url):
    """These tests race many calls of one user: the velocity limits are lifted here (their
    own tests are in tests/sql), and so are the hold periods."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update private.settings set value = '0' where key in "
            "('escrow_hold_seconds', 'payout_hold_seconds', 'payout_method_cool_down_seconds')"
        )
        conn.execute(
            "update private.settings set value = (select jsonb_object_agg(level, "
            "jsonb_build_object('calls', 100000, 'seconds', 60)) "
            "from unnest(array['low', 'medium', 'high']) as level) "
            "where key = 'velocity_limits'"
        )


@pytest.fixture
def quiet_client(cluster, database):
    return AppClient(cluster.socket_url("authenticator", database), reproduce_failures=False)


@pytest.fixture
def pooled_client(cluster, database) -> Iterator[Callable[[], AppClient]]:
    """pooled_client(): the calling thread's client, which keeps its connection from one
    request to the next, as PostgREST's pool hands one on (each request still its own
    transaction): concurrent requests without a new backend for each."""
    url = cluster.socket_url("authenticator", database)
    local = threading.local()
    made: list[AppClient] = []
    lock = threading.Lock()

    def mine() -> AppClient:
        client = getattr(local, "client", None)
        if client is None:
            client = AppClient(url, reproduce_failures=False, reuse_connection=True)
            local.client = client
            with lock:
                made.append(client)
        return client

    yield mine
    for client in made:
        client.close()


@pytest.fixture
def kitchen(db, make_user):
    """A homeowner's project with a contractor, an escrow account and a pending payment."""
    homeowner, contractor = make_user(), make_user()
    project_id, milestone_id = uuid.uuid4(), uuid.uuid4()
    db.execute(
        "insert into public.projects (id, owner_id, contractor_id, title) values (%s, %s, %s, 'P')",
        (project_id, homeowner, contractor),
    )
    db.execute(
        "insert into public.project_milestones (id, project_id, position, title, amount_minor, "
        "currency) values (%s, %s, 1, 'M', 40000, 'USD')",
        (milestone_id, project_id),
    )
    db.execute(
        "insert into public.escrow_accounts (user_id, project_id, currency) values (%s, %s, 'USD')",
        (homeowner, project_id),
    )
    row = db.execute(
        "insert into public.milestone_payments (milestone_id, payer_id) values (%s, %s) "
        "returning id",
        (milestone_id, homeowner),
    ).fetchone()
    assert row is not None
    return {
        "homeowner": homeowner,
        "contractor": contractor,
        "milestone": milestone_id,
        "payment": row[0],
    }


def outcome(call) -> str:
    try:
        call()
    except (psycopg.Error, ApiError) as exc:
        return str(exc.sqlstate)
    return "ok"


def fund(client: AppClient, payment, key: str = "fund") -> None:
    with client.as_service("payment_service") as req:
        req.rpc("fund_milestone_payment", payment, f"pi_{uuid.uuid4().hex[:12]}", 40000, "USD", key)


def test_50_concurrent_releases_of_one_payment_succeed_once(
    quiet_client, pooled_client, db, kitchen
):
    fund(quiet_client, kitchen["payment"])
    with quiet_client.as_user(kitchen["contractor"]) as req:
        req.rpc("submit_milestone", kitchen["milestone"], "submit")
    start = threading.Barrier(WORKERS)

    def release(attempt: int) -> str:
        if attempt < WORKERS:
            start.wait()

        def call() -> None:
            with pooled_client().as_user(kitchen["homeowner"]) as req:
                req.rpc("release_milestone_payment", kitchen["payment"], f"release-{attempt}")

        return outcome(call)

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = Counter(pool.map(release, range(50)))
    assert outcomes["ok"] == 1, outcomes
    assert set(outcomes) <= {"ok", "PT404"}, outcomes
    assert "40P01" not in outcomes
    released = db.execute(
        "select count(*) from private.ledger_transfers "
        "where reference_id = %s and code = 'milestone_release'",
        (kitchen["payment"],),
    ).fetchone()
    assert released == (1,)
    assert reconcile(db.info.dsn) == []


def test_concurrent_withdrawals_never_overdraw(pooled_client, db, make_user):
    contractor = make_user()
    payout = (add_payout_method(db, contractor, "acct_Conc01", f"ba_{uuid.uuid4().hex[:10]}"),)
    db.execute("select tests.fund_wallet(%s, 1000)", (contractor,))

    def withdraw(attempt: int) -> str:
        def call() -> None:
            with pooled_client().as_user(contractor, aal="aal2") as req:
                req.rpc("request_withdrawal", payout[0], 130, "USD", f"withdraw-{attempt}")

        return outcome(call)

    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = Counter(pool.map(withdraw, range(20)))
    # 1000 holds seven withdrawals of 130 (910); the other thirteen are refused.
    assert outcomes == Counter({"ok": 7, "PT409": 13}), outcomes
    row = db.execute(
        "select a.debits_pending, a.credits_posted - a.debits_posted - a.debits_pending, "
        "(select sum(amount_minor) from public.withdrawals where user_id = %s) "
        "from private.ledger_limited_balances as a "
        "where a.kind = 'user_wallet' and a.user_id = %s",
        (contractor, contractor),
    ).fetchone()
    assert row == (910, 90, 910)
    assert reconcile(db.info.dsn) == []


def test_a_fund_racing_a_cancel_has_one_winner(quiet_client, db, kitchen):
    start = threading.Barrier(2)

    def funder() -> str:
        start.wait()
        return outcome(lambda: fund(quiet_client, kitchen["payment"], "race-fund"))

    def canceler() -> str:
        start.wait()

        def call() -> None:
            with quiet_client.as_user(kitchen["homeowner"]) as req:
                req.rpc("cancel_milestone_payment", kitchen["payment"], "race-cancel")

        return outcome(call)

    with ThreadPoolExecutor(2) as pool:
        fund_result, cancel_result = pool.submit(funder), pool.submit(canceler)
        funded, canceled = fund_result.result(), cancel_result.result()
    row = db.execute(
        "select status::text from public.milestone_payments where id = %s", (kitchen["payment"],)
    ).fetchone()
    assert row is not None
    transfers = db.execute(
        "select count(*) from private.ledger_transfers where reference_id = %s",
        (kitchen["payment"],),
    ).fetchone()
    charges = db.execute(
        "select count(*) from public.payment_transactions where description = %s",
        (f"Milestone payment {kitchen['payment']}",),
    ).fetchone()
    if row[0] == "funded":
        # The fund won: the cancel came second and was refused.
        assert (funded, canceled) == ("ok", "PT409"), (funded, canceled)
        assert transfers == (1,)
    else:
        # The cancel won: the processor's charge is kept on record, and nothing was funded.
        assert row[0] == "canceled"
        assert (funded, canceled) == ("ok", "ok"), (funded, canceled)
        assert transfers == (0,)
    assert charges == (1,)
    assert reconcile(db.info.dsn) == []


@pytest.mark.parametrize("first", ["fund", "cancel"])
def test_a_fund_and_a_cancel_in_either_order(quiet_client, db, kitchen, database_url, first):
    """Both orders of the race, forced: the second call waits for the first's lock."""
    tag = uuid.uuid4().hex[:12]
    calls: dict[str, tuple[str, str, tuple[object, ...]]] = {
        "fund": (
            "payment_service",
            "fund_milestone_payment",
            (f"pi_{tag}", 40000, "USD", f"fund-{tag}"),
        ),
        "cancel": ("homeowner", "cancel_milestone_payment", (f"cancel-{tag}",)),
    }
    second = "cancel" if first == "fund" else "fund"

    def request(which: str):
        actor = calls[which][0]
        if actor == "payment_service":
            return quiet_client.as_service("payment_service")
        return quiet_client.as_user(kitchen["homeowner"])

    results: dict[str, str] = {}
    with request(first) as holder:
        holder.rpc(calls[first][1], kitchen["payment"], *calls[first][2])
        waiter = ThreadPoolExecutor(1).submit(
            lambda: outcome(lambda: _run(request(second), calls[second], kitchen["payment"]))
        )
        wait_for_a_lock_wait(db, waiter)
    results[second] = waiter.result(timeout=30)
    status = db.execute(
        "select status::text from public.milestone_payments where id = %s", (kitchen["payment"],)
    ).fetchone()
    if first == "fund":
        assert status == ("funded",)
        assert results["cancel"] == "PT409"
    else:
        assert status == ("canceled",)
        assert results["fund"] == "ok"
        charge = db.execute(
            "select status::text from public.payment_transactions "
            "where processor_transaction_id = %s",
            (f"pi_{tag}",),
        ).fetchone()
        assert charge == ("succeeded",)
    assert reconcile(db.info.dsn) == []


def wait_for_a_lock_wait(db, waiter: Future[str], timeout: float = 10.0) -> None:
    """Until a session of this database waits for a lock (the waiter's request, blocked by
    the open one), or the waiter has ended."""
    deadline = time.monotonic() + timeout
    while not waiter.done() and time.monotonic() < deadline:
        row = db.execute(
            "select exists (select from pg_locks as l join pg_stat_activity as a using (pid) "
            "where not l.granted and a.datname = current_database())"
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.01)


def _run(request, call: tuple[str, str, tuple[object, ...]], payment) -> None:
    with request as req:
        req.rpc(call[1], payment, *call[2])
