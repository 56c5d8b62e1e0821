"""Reads of restricted data leave a trace in the server log (PCI DSS 10.2.1.1): pgaudit logs
each API statement that reads a restricted table, and a staff member's read is logged beside it
with the acting user's id, in the same process and transaction."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest

from payguard.cluster import Cluster
from payguard.testing.client import AppClient
from payguard.testing.tokens import add_payout_method, verify_account

READ = "select id, user_id, brand, last4 from public.payment_methods where id = %s"


@pytest.fixture
def card(db, make_user):
    """Hana's saved card, and an admin, Ada."""
    hana, ada = make_user(), make_user()
    db.execute("update public.users set role = 'admin' where id = %s", (ada,))
    method = uuid.uuid4()
    db.execute(
        "insert into public.payment_methods (id, user_id, type, brand, last4, "
        "processor_payment_method_id_sealed, processor_payment_method_id_lookup, "
        "processor_customer_id_lookup) values (%s, %s, 'credit_card', 'visa', '4242', "
        "tests.sealed_token(), tests.token_lookup(%s), tests.token_lookup(%s))",
        (method, hana, f"pm_Read{method.hex[:12]}", f"cus_Read{method.hex[:12]}"),
    )
    return {"hana": hana, "ada": ada, "method": method}


@pytest.fixture
def server_log(cluster: Cluster) -> Callable[[], Callable[[], list[str]]]:
    """mark() notes the log's end; the function it returns gives the lines written since (once
    the server has written them: it waits a little for a line of its own)."""

    def mark() -> Callable[[], list[str]]:
        start = cluster.log_file.stat().st_size

        def since() -> list[str]:
            for _ in range(50):
                with cluster.log_file.open("rb") as log:
                    log.seek(start)
                    lines = log.read().decode(errors="replace").splitlines()
                if lines:
                    return lines
                time.sleep(0.05)
            return []

        return since

    return mark


def lines_of(lines: list[str], pid: int) -> list[str]:
    return [line for line in lines if f"[{pid}]" in line]


def test_an_admin_read_of_another_users_card_is_logged_with_the_admin(
    client: AppClient, card, server_log
):
    since = server_log()
    with client.as_user(card["ada"], role="admin", aal="aal2", method="GET") as req:
        pid = req.scalar("select pg_backend_pid()")
        rows = req.fetchall(READ, (card["method"],))
    assert [(r[0], r[1]) for r in rows] == [(card["method"], card["hana"])]

    mine = lines_of(since(), pid)
    audit = [line for line in mine if "AUDIT: OBJECT" in line]
    staff = [line for line in mine if "payguard staff read:" in line]
    assert len(audit) == 1, mine
    assert ",READ,SELECT,TABLE,public.payment_methods," in audit[0]
    assert "from public.payment_methods where id =" in audit[0], "the statement, as run"
    assert len(staff) == 1, mine
    assert f"relation=public.payment_methods actor={card['ada']} role=admin app_role=" in staff[0]
    # One transaction: the same virtual transaction id in both prefixes.
    vxids = {re.search(r" (\d+/\d+) ", line).group(1) for line in audit + staff}  # type: ignore[union-attr]
    assert len(vxids) == 1, audit + staff


def test_the_owner_read_is_logged_by_pgaudit_but_names_no_staff(
    client: AppClient, card, server_log
):
    since = server_log()
    with client.as_user(card["hana"], aal="aal1", method="GET") as req:
        pid = req.scalar("select pg_backend_pid()")
        rows = req.fetchall(READ, (card["method"],))
    assert len(rows) == 1
    mine = lines_of(since(), pid)
    assert any("AUDIT: OBJECT" in line and "public.payment_methods" in line for line in mine), mine
    assert not any("payguard staff read:" in line for line in mine), mine


def test_a_read_of_an_unrestricted_table_is_not_logged(client: AppClient, card, server_log):
    since = server_log()
    with client.as_user(card["ada"], role="admin", aal="aal2", method="GET") as req:
        pid = req.scalar("select pg_backend_pid()")
        req.fetchall("select id from public.projects")
        req.scalar("select 1")  # a line to wait for, whatever the log holds
        req.scalar("select private.log_staff_read('marker')")
    mine = lines_of(since(), pid)
    assert any("relation=marker" in line for line in mine), mine
    assert not any("AUDIT:" in line for line in mine), mine
    assert not any("relation=public." in line for line in mine), mine


@pytest.fixture
def restricted_rows(db, make_user):
    """A row in each restricted table: Carl's payout method and his withdrawal to it (and the
    audit rows those writes leave)."""
    carl = make_user()
    db.execute("update public.users set role = 'contractor' where id = %s", (carl,))
    account = f"acct_Read{uuid.uuid4().hex[:12]}"
    method = add_payout_method(db, carl, account, f"ba_Read{uuid.uuid4().hex[:12]}")
    verify_account(db, account)
    db.execute("select tests.fund_wallet(%s, 50000)", (carl,))
    db.execute("update private.settings set value = '0' where key = 'payout_hold_seconds'")
    db.execute(
        "insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency) "
        "values (%s, %s, 10000, 'USD')",
        (carl, method),
    )


@pytest.mark.parametrize(
    ("table", "role", "app_role"),
    [
        ("payout_methods", "admin", "admin"),
        ("withdrawals", "admin", "admin"),
        ("payment_audit_logs", "auditor", "auditor"),
        ("payment_audit_logs", "authenticated", "system_admin"),
    ],
)
def test_each_restricted_table_logs_its_staff_reads(
    client: AppClient, db, make_user, restricted_rows, server_log, table, role, app_role
):
    staff = make_user()
    db.execute("update public.users set role = %s where id = %s", (app_role, staff))
    since = server_log()
    with client.as_user(staff, role=role, aal="aal2", method="GET") as req:
        pid = req.scalar("select pg_backend_pid()")
        assert req.fetchall(f"select id from public.{table} limit 1"), "a row is read"
    mine = lines_of(since(), pid)
    assert any(
        "AUDIT: OBJECT" in line and f",READ,SELECT,TABLE,public.{table}," in line for line in mine
    ), mine
    assert any(f"relation=public.{table} actor={staff} role={role}" in line for line in mine), mine


def test_a_statement_that_reads_no_row_is_logged_by_pgaudit_alone(
    client: AppClient, card, server_log
):
    """The staff line comes from the policy, which runs on the rows read: a statement that
    reads none accessed no data, and pgaudit's line still records it."""
    since = server_log()
    with client.as_user(card["ada"], role="admin", aal="aal2", method="GET") as req:
        pid = req.scalar("select pg_backend_pid()")
        assert req.fetchall(READ, (uuid.uuid4(),)) == []
    mine = lines_of(since(), pid)
    assert any("AUDIT: OBJECT" in line and "public.payment_methods" in line for line in mine)
    assert not any("payguard staff read:" in line for line in mine), mine
