"""The demo's scenario holds (each step allowed or refused as it says), and the benchmark's
workload lists exactly each user's rows under RLS."""

from __future__ import annotations

import psycopg

from payguard.bench import transitions
from payguard.bench.rls import run
from payguard.cluster import APP_ROLE
from payguard.demo import run_demo


def test_every_demo_step_is_allowed_or_refused_as_it_says(project):
    outcomes = run_demo(project, lambda outcome: None)
    unexpected = [
        f"{o.step.actor} {o.step.action}: {o.detail}" for o in outcomes if not o.as_expected
    ]
    assert unexpected == []
    assert sum(not o.allowed for o in outcomes) >= 10, "the demo shows attacks being refused"
    card_number = [o for o in outcomes if "card number" in o.step.action]
    assert len(card_number) == 1
    assert card_number[0].detail.startswith("PT422"), (
        "the card-data guard refuses it, not a missing privilege: " + card_number[0].detail
    )
    erased = [o for o in outcomes if o.step.action.startswith("erases Dora's personal data")]
    assert len(erased) == 1
    assert erased[0].allowed
    open_money = [o for o in outcomes if o.step.action.startswith("tries to erase Carl")]
    assert open_money[0].detail.startswith("PT409: "), open_money[0].detail
    # the demo ends, after the erasure, with the audit chain verified and the books clean
    assert outcomes[-2].detail.startswith("verified: ")
    assert outcomes[-1].detail == "reconciled: no difference"


def test_the_benchmark_lists_each_users_own_rows(cluster, deployed_database):
    _, results = run(
        cluster.socket_url(APP_ROLE, deployed_database),
        users=20,
        rows=400,
        payments=40,
        samples=10,
        seed=3,
    )
    by_name = {r.name: r for r in results}
    # 400 transactions over 20 users: RLS gives each exactly their 20.
    assert by_name["payment_transactions"].rows_per_listing == 20
    # 40 payments, each with one of 10 payers and one of 10 payees: 4 per user.
    assert by_name["milestone_payments"].rows_per_listing == 4
    assert all(r.ratio > 0 for r in results)


def test_the_release_benchmark_releases_every_payment(cluster, deployed_database, empty_database):
    database, pgbench_database = deployed_database, empty_database
    result = transitions.run(
        cluster.socket_url(APP_ROLE, database),
        (str(cluster.socket_dir), cluster.port() or 0, "authenticator", database),
        pgbench_target=(
            str(cluster.socket_dir),
            cluster.port() or 0,
            APP_ROLE,
            pgbench_database,
        ),
        payments=48,
        clients=4,
        pgbench_seconds=1,
        pgbench_scale=1,
    )
    with psycopg.connect(cluster.admin_url(database)) as conn:
        released = conn.execute(
            "select count(*) from private.ledger_transfers where code = 'milestone_release'"
        ).fetchone()
    # Half the rounds ran with the audit trail on, half with it off; every payment released.
    assert (result.releases + result.unaudited_releases, result.failures) == (48, 0)
    assert released == (48,)
    assert result.tps > 0
    assert result.unaudited_tps > 0
    assert result.pgbench_tps > 0
    assert [audit for audit, _ in result.rounds] == [False, True] * 3
    # every audited release left its rows (the payment, the escrow's cached balance, two
    # transfers and their four entries), and all of them were sealed
    assert result.lag.rows >= 8 * result.releases
    assert 0 < result.lag.max_s < 30
