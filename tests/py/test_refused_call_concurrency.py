"""Refused calls under concurrency, through the app's own path (authenticator, RLS, RPCs):
parallel refusals of one user count each once against the velocity limit, and over it they
leave one audit row and one alert that counts them all, whoever came first."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from payguard.testing.client import ApiError, AppClient
from payguard.testing.tokens import add_payout_method

WORKERS = 8
CALLS = 40
LIMIT = 5


@pytest.fixture(scope="module", autouse=True)
def a_day_long_window(database_url):
    """High is LIMIT calls per UTC day here: the calls of a test all fall in one window."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update private.settings set value = jsonb_set(value, '{high}', "
            "jsonb_build_object('calls', %s::int, 'seconds', 86400)) "
            "where key = 'velocity_limits'",
            (LIMIT,),
        )
        conn.execute(
            "update private.settings set value = "
            '\'{"time_zone": "UTC", "from": 0, "to": 24}\' where key = \'business_hours\''
        )


@pytest.fixture
def quiet_client(cluster, database):
    return AppClient(cluster.socket_url("authenticator", database), reproduce_failures=False)


def withdraw_in_parallel(client: AppClient, user, payout_method) -> Counter[str]:
    start = threading.Barrier(WORKERS)

    def call(attempt: int) -> str:
        if attempt < WORKERS:
            start.wait()
        try:
            with client.as_user(user, aal="aal2") as req:
                req.rpc("request_withdrawal", payout_method, 100, "USD", f"withdraw-{attempt}")
        except (psycopg.Error, ApiError) as exc:
            return str(exc.sqlstate)
        return "ok"

    with ThreadPoolExecutor(WORKERS) as pool:
        return Counter(pool.map(call, range(CALLS)))


def refusals_recorded(db, user) -> tuple[int, list[tuple[object, ...]], list[tuple[object, ...]]]:
    rows = db.execute(
        "select count(*) from public.payment_audit_logs where user_id = %s and not success",
        (user,),
    ).fetchone()
    assert rows is not None
    alerts = db.execute(
        "select operation, (details ->> 'refused_calls')::int from public.security_alerts "
        "where user_id = %s and details ? 'refused'",
        (user,),
    ).fetchall()
    counters = db.execute(
        "select operation, call_count from private.rate_limit_counters where user_id = %s",
        (user,),
    ).fetchall()
    return rows[0], alerts, counters


def test_parallel_refusals_count_once_each_and_leave_one_alert(quiet_client, db, make_user):
    stranger = make_user()
    # a payout method that is not the stranger's: every call is refused (no funds to hold)
    outcomes = withdraw_in_parallel(quiet_client, stranger, uuid.uuid4())
    assert outcomes == Counter({"PT409": LIMIT, "PT429": CALLS - LIMIT}), outcomes
    rows, alerts, counters = refusals_recorded(db, stranger)
    assert rows == LIMIT + 1
    assert alerts == [("request_withdrawal", CALLS - LIMIT)]
    assert counters == [("withdrawals.insert", CALLS)]


def test_parallel_accepted_and_refused_calls_share_the_limit(quiet_client, db, make_user):
    contractor = make_user()
    payout = (add_payout_method(db, contractor, "acct_Conc02", f"ba_{uuid.uuid4().hex[:10]}"),)
    db.execute("select tests.fund_wallet(%s, 100000)", (contractor,))
    outcomes = withdraw_in_parallel(quiet_client, contractor, payout[0])
    assert outcomes == Counter({"ok": LIMIT, "PT429": CALLS - LIMIT}), outcomes
    rows, alerts, counters = refusals_recorded(db, contractor)
    assert rows == 1
    assert alerts == [("request_withdrawal", CALLS - LIMIT)]
    assert counters == [("withdrawals.insert", CALLS)]
    withdrawals = db.execute(
        "select count(*) from public.withdrawals where user_id = %s", (contractor,)
    ).fetchone()
    assert withdrawals == (LIMIT,)
