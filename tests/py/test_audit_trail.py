"""The audit trail end to end: refusals committed as PostgREST commits them, an entity's
history for auditors, and retention."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.audit.chain import verify
from payguard.audit.sealer import seal_now
from payguard.cli import app
from payguard.testing.client import ApiError


@pytest.fixture
def kitchen(db, make_user):
    db.execute("update private.settings set value = '0' where key = 'escrow_hold_seconds'")
    hana, carl, audrey = make_user(), make_user(), make_user()
    db.execute("update public.users set role = 'contractor' where id = %s", (carl,))
    db.execute("update public.users set role = 'auditor' where id = %s", (audrey,))
    project = uuid.uuid4()
    db.execute(
        "insert into public.projects (id, owner_id, contractor_id, title) "
        "values (%s, %s, %s, 'Kitchen')",
        (project, hana, carl),
    )
    milestone = uuid.uuid4()
    db.execute(
        "insert into public.project_milestones (id, project_id, position, title, amount_minor, "
        "currency) values (%s, %s, 1, 'Cabinets', 40000, 'USD')",
        (milestone, project),
    )
    db.execute(
        "insert into public.escrow_accounts (user_id, project_id, currency) values (%s, %s, 'USD')",
        (hana, project),
    )
    return {"hana": hana, "carl": carl, "audrey": audrey, "milestone": milestone}


def test_a_refused_call_is_committed_with_its_audit_row(client, db, kitchen):
    with client.as_user(kitchen["hana"]) as req:
        payment = req.rpc("create_milestone_payment", kitchen["milestone"], "create-1")["id"]
    with (
        pytest.raises(ApiError) as refused,
        client.as_user(
            kitchen["carl"], headers={"x-forwarded-for": "203.0.113.50", "user-agent": "evil/1.0"}
        ) as req,
    ):
        req.rpc("release_milestone_payment", payment, "release-by-payee")
    assert (refused.value.status, refused.value.sqlstate) == (404, "PT404")
    assert refused.value.body["message"] == f"no milestone payment {payment} that you may release"
    row = db.execute(
        "select user_id, user_role, ip_address, user_agent, success, error_message "
        "from public.payment_audit_logs where operation = 'release_milestone_payment' "
        "and entity_id = %s",
        (payment,),
    ).fetchone()
    assert row == (
        kitchen["carl"],
        "contractor",
        "203.0.113.50",
        "evil/1.0",
        False,
        f"no milestone payment {payment} that you may release",
    )
    status = db.execute(
        "select status::text from public.milestone_payments where id = %s", (payment,)
    )
    assert status.fetchone() == ("pending",)


def test_an_auditor_reads_a_payments_history_across_tables(client, db, kitchen):
    with client.as_user(kitchen["hana"]) as req:
        payment = req.rpc("create_milestone_payment", kitchen["milestone"], "create-2")["id"]
    with client.as_service("payment_service") as req:
        req.rpc("fund_milestone_payment", payment, "pi_1HistoryFund", 40000, "USD", "fund-2")
    with pytest.raises(ApiError), client.as_user(kitchen["carl"]) as req:
        req.rpc("release_milestone_payment", payment, "release-early")
    with client.as_user(kitchen["carl"]) as req:
        req.rpc("submit_milestone", kitchen["milestone"], "submit-2")
    with client.as_user(kitchen["hana"], headers={"x-correlation-id": "corr-release"}) as req:
        req.rpc("release_milestone_payment", payment, "release-2")
    with client.as_user(kitchen["audrey"]) as req:
        history = req.fetchall(
            "select seq, operation, entity_type, success, user_role, metadata ->> 'correlation_id' "
            "from public.audit_history('milestone_payments', %s)",
            (str(payment),),
        )
    assert [h[0] for h in history] == sorted(h[0] for h in history)
    tables = {h[2] for h in history}
    assert {
        "milestone_payments",
        "payment_transactions",
        "ledger_transfers",
        "ledger_entries",
        "escrow_accounts",
    } <= tables, tables
    steps = [(h[1], h[2], h[3], h[4]) for h in history if h[2] == "milestone_payments"]
    assert steps == [
        ("INSERT", "milestone_payments", True, "homeowner"),
        ("UPDATE", "milestone_payments", True, "payment_service"),
        ("release_milestone_payment", "milestone_payments", False, "contractor"),
        ("UPDATE", "milestone_payments", True, "homeowner"),
    ]
    assert {h[5] for h in history if h[4] == "homeowner" and h[1] != "INSERT"} == {"corr-release"}
    with client.as_user(kitchen["hana"]) as req:
        mine = req.fetchall(
            "select seq from public.audit_history('milestone_payments', %s)", (str(payment),)
        )
    assert mine == [], "the payer is no auditor: the log's policy shows them nothing"


def test_retention_purges_only_sealed_rows_older_than_ten_years(
    database_url, admin_url, db, make_user
):
    for _ in range(6):
        make_user()
    seqs = [r[0] for r in db.execute("select seq from public.payment_audit_logs order by seq")]
    old = seqs[:4]
    # The superuser backdates the first rows before they are sealed (as if written in 2014).
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute(
            "update public.payment_audit_logs set timestamp = now() - interval '11 years' "
            "where seq = any(%s)",
            (old,),
        )
    seal_now(database_url)
    assert verify(database_url).ok
    result = CliRunner().invoke(app, ["audit", "purge", "--db-url", admin_url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"purged 4 audit rows through seq {old[-1]}")
    remaining = [r[0] for r in db.execute("select seq from public.payment_audit_logs order by seq")]
    assert remaining[0] == seqs[4]
    purge = db.execute(
        "select operation, new_values ->> 'purged_rows', user_role from public.payment_audit_logs "
        "where operation = 'PURGE'"
    ).fetchall()
    assert purge == [("PURGE", "4", "postgres")]
    seal_now(database_url)
    verdict = verify(database_url)
    assert verdict.ok, verdict
    again = CliRunner().invoke(app, ["audit", "purge", "--db-url", admin_url])
    assert again.output.startswith("nothing to purge"), again.output
