"""payguard users erase: a user's personal data is erased, their money and the audit chain are
kept whole, and open money is refused with nothing changed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.audit.chain import verify
from payguard.audit.sealer import seal_now
from payguard.cli import app
from payguard.reconcile import reconcile

REASON = "Erasure asked by the user, request 2026-118"


@pytest.fixture
def books(cluster, fresh_database, record_books) -> dict[str, Any]:
    """A fresh deploy where hana funded two milestones and released one to carl, plus erin,
    who has a name, a phone and a nicknamed payment method but no money; every audit row
    sealed."""
    recorded = record_books(fresh_database)
    admin = recorded["admin"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("set role postgres")
        erin = conn.execute(
            "select tests.create_supabase_user('erin', email => 'erin@example.test', "
            'metadata => \'{"full_name": "Erin Example"}\')'
        ).fetchone()
        assert erin is not None
        conn.execute("update public.users set phone = '+14155550123' where id = %s", (erin[0],))
        conn.execute(
            "insert into public.payment_methods (user_id, type, "
            "processor_payment_method_id_sealed, processor_payment_method_id_lookup, "
            "processor_customer_id_lookup, brand, last4, "
            "nickname) values (%s, 'credit_card', tests.sealed_token(), "
            "tests.token_lookup('pm_ErinPy01'), tests.token_lookup('cus_ErinPy01'), 'visa', "
            "'4242', 'Erin''s card')",
            (erin[0],),
        )
        hana = conn.execute(
            "select payer_id from public.milestone_payments where id = %s",
            (recorded["payments"][1],),
        ).fetchone()
        assert hana is not None
    seal_now(admin)
    return {"admin": admin, "erin": erin[0], "hana": hana[0], "payments": recorded["payments"]}


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_an_erasure_keeps_the_audit_chain_and_the_books_clean(books):
    before = rows(books["admin"], "select count(*) from public.payment_audit_logs")[0][0]
    result = CliRunner().invoke(
        app,
        ["users", "erase", str(books["erin"]), "--reason", REASON, "--db-url", books["admin"]],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"erased user {books['erin']} at ")
    assert "1 payment and 0 payout methods cleared" in result.output

    assert rows(
        books["admin"],
        "select email, full_name, phone, erased_at is not null from public.users where id = %s",
        books["erin"],
    ) == [(None, None, None, True)]
    assert rows(
        books["admin"],
        "select email, phone, raw_user_meta_data, banned_until = 'infinity' "
        "from auth.users where id = %s",
        books["erin"],
    ) == [(None, None, {}, True)]
    # no audit row, old or new, holds her personal data in clear; the sealed ones are untouched
    assert rows(
        books["admin"],
        "select count(*) from public.payment_audit_logs where concat(old_values::text, "
        "new_values::text) ~* 'erin@example|Erin Example|4155550123|Erin''s card'",
    ) == [(0,)]
    assert rows(books["admin"], "select count(*) from public.payment_audit_logs")[0][0] > before

    seal_now(books["admin"])
    verdict = verify(books["admin"])
    assert verdict.ok, verdict
    runner = CliRunner()
    verified = runner.invoke(app, ["audit", "verify", "--db-url", books["admin"]])
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("verified: ")
    assert reconcile(books["admin"]) == []
    reconciled = runner.invoke(app, ["reconcile", "--db-url", books["admin"]])
    assert reconciled.exit_code == 0, reconciled.output
    assert reconciled.output.startswith("reconciled: ")


def test_open_money_is_refused_and_nothing_changes(books):
    before = rows(books["admin"], "select count(*) from public.payment_audit_logs")
    result = CliRunner().invoke(
        app,
        [
            "users",
            "erase",
            str(books["hana"]),
            "--reason",
            REASON,
            "--db-url",
            books["admin"],
            "--json",
        ],
    )
    assert result.exit_code == 3, result.output
    error = json.loads(result.stderr)["error"]
    assert error["code"] == 3
    assert error["message"].startswith(
        f"database error: SQLSTATE PT409: user {books['hana']} has open money and cannot be "
        "erased: "
    )
    assert error["message"].endswith("(settle, cancel or pay out each of these first, then erase)")
    assert f"milestone payment {books['payments'][1]} is funded" in error["message"]
    assert "escrow account " in error["message"]
    assert rows(books["admin"], "select count(*) from public.payment_audit_logs") == before
    assert rows(
        books["admin"], "select erased_at from public.users where id = %s", books["hana"]
    ) == [(None,)]


def test_the_json_summary_names_what_was_done(books):
    result = CliRunner().invoke(
        app,
        [
            "users",
            "erase",
            str(books["erin"]),
            "--reason",
            REASON,
            "--db-url",
            books["admin"],
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["user_id"] == str(books["erin"])
    assert summary["fingerprint_key"] == "shredded"
    assert summary["payment_methods"] == 1
    again = CliRunner().invoke(
        app,
        ["users", "erase", str(books["erin"]), "--reason", REASON, "--db-url", books["admin"]],
    )
    assert again.exit_code == 3
    assert f"user {books['erin']} was already erased at " in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-a-uuid", "--reason", REASON], "USER_ID must be a user's id (a UUID)"),
        ([str(uuid.uuid4())], "Missing option '--reason'"),
    ],
)
def test_usage_errors(args, message):
    result = CliRunner().invoke(app, ["users", "erase", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_an_unwritten_reason_or_an_unknown_user_is_refused(books):
    short = CliRunner().invoke(
        app, ["users", "erase", str(books["erin"]), "--reason", "gdpr", "--db-url", books["admin"]]
    )
    assert short.exit_code == 3
    assert "needs a written reason of 10 to 2000 characters" in short.stderr
    nobody = uuid.uuid4()
    unknown = CliRunner().invoke(
        app, ["users", "erase", str(nobody), "--reason", REASON, "--db-url", books["admin"]]
    )
    assert unknown.exit_code == 3
    assert f"no user {nobody}" in unknown.stderr
