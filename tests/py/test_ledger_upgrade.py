"""The running-balances migration on a ledger with history: it numbers the entries already
recorded, gives them their totals, records that in the audit trail, and refuses to run when
an account's row disagrees with its entries."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.reconcile import reconcile

RUNNING_BALANCES = "20261126120000_ledger_running_balances.sql"


@pytest.fixture
def before_running_balances(cluster, empty_database, project: Project, scratch_project: Project):
    """A database deployed with every migration before RUNNING_BALANCES; its admin URL."""
    for path in sorted(project.migrations_dir.glob("*.sql")):
        if path.name < RUNNING_BALANCES:
            shutil.copy(path, scratch_project.migrations_dir)
    admin = cluster.admin_url(empty_database)
    deploy(admin, scratch_project)
    return admin


def add_running_balances(project: Project, scratch_project: Project, admin: str) -> None:
    shutil.copy(project.migrations_dir / RUNNING_BALANCES, scratch_project.migrations_dir)
    deploy(admin, scratch_project)


def payouts(admin: str) -> None:
    """carl's wallet pays out twice, in two phases: one payout posted, one voided."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("set role postgres")
        for post in (True, False):
            conn.execute(
                "select private.ledger_resolve(private.ledger_transfer('test_payout', a.id, "
                "private.ledger_system_account('processor_clearing', 'USD'), 1000, 'USD', "
                "pending => true), post => %s) "
                "from private.ledger_accounts as a where a.kind = 'user_wallet'",
                (post,),
            )


def test_history_is_numbered_with_its_totals_and_the_change_is_audited(
    before_running_balances, record_books, empty_database, project, scratch_project
):
    admin = before_running_balances
    record_books(empty_database)
    payouts(admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        counters = conn.execute(
            "select id, debits_pending, debits_posted, credits_pending, credits_posted "
            "from private.ledger_accounts where debits_must_not_exceed_credits order by id"
        ).fetchall()
        limited_entries = conn.execute(
            "select e.id::text from private.ledger_entries as e "
            "join private.ledger_accounts as a on a.id = e.account_id "
            "where a.debits_must_not_exceed_credits order by e.id"
        ).fetchall()
        mark = conn.execute("select max(seq) from public.payment_audit_logs").fetchone()
    assert len(counters) == 2  # the escrow and carl's wallet
    # the escrow's two fundings, the release (the escrow twice, the wallet), the payouts
    assert len(limited_entries) == 2 + 3 + 5

    add_running_balances(project, scratch_project, admin)

    with psycopg.connect(admin, autocommit=True) as conn:
        balances = conn.execute(
            "select account_id, debits_pending, debits_posted, credits_pending, "
            "credits_posted from private.ledger_limited_balances order by account_id"
        ).fetchall()
        versions = conn.execute(
            "select e.account_id, array_agg(e.account_version order by e.id) "
            "from private.ledger_entries as e where e.account_version is not null "
            "group by e.account_id order by e.account_id"
        ).fetchall()
        audited = conn.execute(
            "select l.entity_id, l.old_values ->> 'account_version', "
            "l.new_values ->> 'account_version', l.old_values - array['account_version', "
            "'account_debits_pending', 'account_debits_posted', 'account_credits_pending', "
            "'account_credits_posted'] = l.new_values - array['account_version', "
            "'account_debits_pending', 'account_debits_posted', 'account_credits_pending', "
            "'account_credits_posted'] "
            "from public.payment_audit_logs as l where l.seq > %s order by l.entity_id::bigint",
            mark,
        ).fetchall()
    assert balances == counters
    assert [(account, numbers) for account, numbers in versions] == [
        (account, list(range(1, len(numbers) + 1))) for account, numbers in versions
    ]
    assert sum(len(numbers) for _, numbers in versions) == len(limited_entries)
    assert [
        (entity, old, changed_only_totals) for entity, old, _, changed_only_totals in audited
    ] == [(entry, None, True) for (entry,) in limited_entries]
    assert all(new is not None for _, _, new, _ in audited)
    assert reconcile(admin) == []


def test_a_row_that_disagrees_with_its_entries_stops_the_migration(
    before_running_balances, record_books, empty_database, project, scratch_project
):
    admin = before_running_balances
    record_books(empty_database)
    with psycopg.connect(admin, autocommit=True) as conn:
        wallet = conn.execute(
            "update private.ledger_accounts set credits_posted = credits_posted + 1 "
            "where kind = 'user_wallet' returning id"
        ).fetchone()
    assert wallet is not None
    with pytest.raises(
        PayguardError,
        match=f"user_wallet account {wallet[0]}: the balances on its row differ from the sums "
        "of its entries",
    ):
        add_running_balances(project, scratch_project, admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        left = conn.execute(
            "select count(*) from information_schema.columns "
            "where table_schema = 'private' and table_name = 'ledger_entries' "
            "and column_name = 'account_version'"
        ).fetchone()
    assert left == (0,)


def test_the_migration_waits_for_a_transfer_in_flight_without_deadlocking(
    before_running_balances, record_books, empty_database, project, scratch_project
):
    """A transfer under the previous functions reads the accounts, then writes the transfer,
    the entries and the accounts. The migration waits for it to end while holding none of
    the ledger's tables, so the transfer finishes instead of deadlocking with it."""
    admin = before_running_balances
    record_books(empty_database)
    with psycopg.connect(admin) as in_flight, ThreadPoolExecutor(1) as pool:
        in_flight.execute("set lock_timeout = '10s'")
        wallet = in_flight.execute(
            "select id from private.ledger_accounts where kind = 'user_wallet'"
        ).fetchone()
        assert wallet is not None
        deploying = pool.submit(add_running_balances, project, scratch_project, admin)
        time.sleep(1)
        assert not deploying.done()
        in_flight.execute(
            "select private.ledger_transfer('test_deposit', "
            "private.ledger_system_account('processor_clearing', 'USD'), %s, 5, 'USD')",
            wallet,
        )
        in_flight.commit()
        deploying.result(timeout=60)
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "select b.credits_posted - b.debits_posted, "
            "(select count(*) from private.ledger_entries as e where e.account_id = b.account_id) "
            "from private.ledger_limited_balances as b where b.account_id = %s",
            wallet,
        ).fetchone()
    assert row == (28500 + 5, 2)
    assert reconcile(admin) == []
