"""payguard reconcile: silent on money that adds up, and loud on each way it cannot."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.deploy import deploy
from payguard.reconcile import reconcile


@pytest.fixture
def books(cluster, empty_database, project, record_books):
    """A fresh deploy in which hana funded two milestones and released one to carl."""
    deploy(cluster.admin_url(empty_database), project)
    return record_books(empty_database)


def test_money_that_adds_up_reconciles(books):
    assert reconcile(books["admin"]) == []
    result = CliRunner().invoke(app, ["reconcile", "--db-url", books["admin"]])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("reconciled: 9 checks, no difference")


def tamper(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_a_cached_escrow_balance_that_drifted_is_reported(books):
    tamper(books["admin"], "update public.escrow_accounts set balance_minor = balance_minor + 1")
    assert [d.check for d in reconcile(books["admin"])] == [
        "escrow balance differs from the ledger"
    ]


def test_a_running_balance_that_drifted_is_reported(books):
    tamper(
        books["admin"],
        "alter table private.ledger_entries disable trigger refuse_ledger_rewrite",
        "update private.ledger_entries as e set account_credits_posted = "
        "e.account_credits_posted + 5 from private.ledger_accounts as a "
        "where a.id = e.account_id and a.kind = 'user_wallet'",
    )
    found = reconcile(books["admin"])
    assert {d.check for d in found} == {"entry out of line with its account's running balance"}
    assert all(" (user_wallet " in d.subject for d in found)


def test_entries_renumbered_out_of_line_are_reported(books):
    tamper(
        books["admin"],
        "alter table private.ledger_entries disable trigger refuse_ledger_rewrite",
        "update private.ledger_entries as e set account_version = e.account_version + 100 "
        "from private.ledger_accounts as a where a.id = e.account_id and a.kind = 'escrow'",
    )
    found = reconcile(books["admin"])
    assert {d.check for d in found} == {"entry out of line with its account's running balance"}
    assert all(" (escrow " in d.subject for d in found)


def test_a_running_balance_on_a_hot_account_is_reported(books):
    tamper(
        books["admin"],
        "alter table private.ledger_entries disable trigger refuse_ledger_rewrite",
        "update private.ledger_entries as e set account_version = e.id, "
        "account_debits_pending = 0, account_debits_posted = 0, account_credits_pending = 0, "
        "account_credits_posted = e.amount from private.ledger_accounts as a "
        "where a.id = e.account_id and a.kind = 'platform_fees'",
    )
    found = reconcile(books["admin"])
    assert {d.check for d in found} == {"entry out of line with its account's running balance"}
    assert all(" (platform_fees " in d.subject for d in found)


def test_an_unbalanced_transfer_is_reported(books):
    tamper(
        books["admin"],
        "alter table private.ledger_entries disable trigger check_transfer_balances",
        "insert into private.ledger_entries (transfer_id, account_id, side, bucket, amount) "
        "select t.id, t.credit_account_id, 'credit', 'posted', 1 "
        "from private.ledger_transfers as t where t.code = 'platform_fee'",
    )
    checks = {d.check for d in reconcile(books["admin"])}
    assert "unbalanced transfer" in checks
    assert "money not conserved" in checks


def test_a_payment_funded_without_its_processor_transaction_is_reported(books):
    tamper(
        books["admin"],
        "update public.payment_transactions set amount_minor = 29999 "
        "where processor_transaction_id = 'pi_1Books'",
    )
    found = reconcile(books["admin"])
    assert [(d.check, d.subject) for d in found] == [
        (
            "funded milestone payment without its processor transaction",
            str(books["payments"][1]),
        )
    ]
    result = CliRunner().invoke(app, ["reconcile", "--db-url", books["admin"]])
    assert result.exit_code == 1
    assert "1 differences" in result.output
