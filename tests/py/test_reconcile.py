"""payguard reconcile: silent on money that adds up, and loud on each way it cannot."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from payguard.cli import app
from payguard.reconcile import reconcile
from payguard.template import clone_template, drop_clone
from payguard.testing.client import AppClient
from payguard.testing.tokens import add_payout_method, lookup_of, verify_account


@pytest.fixture(scope="module")
def recorded_books(cluster, record_books) -> Iterator[tuple[str, list[uuid.UUID]]]:
    """A fresh deploy (a clone of the template) in which hana funded two milestones and
    released one to carl, recorded once for the module: its name and the payments. Nothing
    stays connected to it, so that each test copies it."""
    name, _ = clone_template(cluster, "books")
    recorded = record_books(name)
    yield name, recorded["payments"]
    drop_clone(cluster, name)


@pytest.fixture
def fresh_database(cluster, recorded_books) -> Iterator[str]:
    """This test's own copy of the recorded books (each test tampers with its copy)."""
    name, _ = clone_template(cluster, "books_copy", template=recorded_books[0])
    yield name
    drop_clone(cluster, name)


@pytest.fixture
def books(cluster, fresh_database, recorded_books) -> dict[str, Any]:
    """The books in this test's copy: its admin URL and the payments, as record_books gives
    them."""
    return {"admin": cluster.admin_url(fresh_database), "payments": recorded_books[1]}


def test_money_that_adds_up_reconciles(books):
    assert reconcile(books["admin"]) == []
    result = CliRunner().invoke(app, ["reconcile", "--db-url", books["admin"]])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("reconciled: 12 checks, no difference")


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


def succeeded(payment: object, intent: str, amount: int, event_id: str) -> Jsonb:
    """A payment_intent.succeeded event as the stripe-webhook function passes it on."""
    return Jsonb(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": intent,
                    "object": "payment_intent",
                    "amount": amount,
                    "currency": "usd",
                    "metadata": {"milestone_payment_id": str(payment)},
                }
            },
        }
    )


def test_a_refused_charge_is_reported_as_an_inconsistency_and_a_refused_event(
    books, cluster, fresh_database
):
    client = AppClient(cluster.socket_url("authenticator", fresh_database))
    with client.as_service("payment_service") as req:
        answer = req.scalar(
            "select public.apply_stripe_event(%s)",
            (succeeded(books["payments"][1], "pi_Twice01", 30000, "evt_Twice01"),),
        )
    assert answer["status"] == "refused"
    found = reconcile(books["admin"])
    assert [d.check for d in found] == [
        "open processor inconsistency",
        "webhook event refused or failed",
    ]
    assert found[0].subject.startswith(
        f"charge_refused pi_Twice01 of milestone payment {books['payments'][1]}, 30000 USD "
        "(event evt_Twice01): The processor charged but the database refused it"
    )
    assert found[1].subject.startswith(
        "evt_Twice01 payment_intent.succeeded refused of pi_Twice01 (PT409): milestone payment "
    )
    result = CliRunner().invoke(app, ["reconcile", "--db-url", books["admin"], "--json"])
    assert result.exit_code == 1
    assert "pi_Twice01" in result.output


def test_a_recovered_charge_and_a_retried_event_are_no_longer_reported(
    books, cluster, fresh_database
):
    client = AppClient(cluster.socket_url("authenticator", fresh_database))
    # the database could not be reached after a charge: the function records it afterwards
    with client.as_service("payment_service") as req:
        recorded = req.scalar(
            "select public.record_processor_inconsistency('charge_unrecorded', 'pi_Lost01', "
            "%s, 30000, 'USD', 'The database could not be reached after the charge')",
            (books["payments"][1],),
        )
    assert [d.check for d in reconcile(books["admin"])] == ["open processor inconsistency"]
    # an event that fails (a privilege withdrawn by mistake) is reported until it is applied
    refund = Jsonb(
        {
            "id": "evt_Refund01",
            "object": "event",
            "type": "charge.refunded",
            "data": {
                "object": {
                    "id": "ch_Lost01",
                    "object": "charge",
                    "payment_intent": "pi_Lost01",
                    "amount": 30000,
                    "amount_refunded": 30000,
                    "currency": "usd",
                }
            },
        }
    )
    tamper(
        books["admin"],
        "revoke update (recovery, resolution) on public.processor_inconsistencies "
        "from payment_service",
    )
    with client.as_service("payment_service") as req:
        assert req.scalar("select public.apply_stripe_event(%s) ->> 'status'", (refund,)) == (
            "failed"
        )
    assert [d.check for d in reconcile(books["admin"])] == [
        "open processor inconsistency",
        "webhook event refused or failed",
    ]
    tamper(
        books["admin"],
        "grant update (recovery, resolution) on public.processor_inconsistencies "
        "to payment_service",
    )
    # the payment is funded already: the charge is to be refunded, and the refund settles it
    with client.as_service("payment_service") as req:
        decision = req.scalar(
            "select public.recover_processor_inconsistency(%s)", (recorded["id"],)
        )
        assert decision["recovery"] == "refund"
        assert req.scalar("select public.apply_stripe_event(%s) ->> 'status'", (refund,)) == (
            "processed"
        )
    assert reconcile(books["admin"]) == []


def waits_for_a_lock(admin_url: str, pid: int, thread: threading.Thread) -> bool:
    """True once the server shows the backend `pid` waiting for a lock while `thread` (which
    runs its statement) still runs; False if the thread ends first (it did not wait)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(admin_url, autocommit=True) as conn:
        while thread.is_alive() and time.monotonic() < deadline:
            row = conn.execute(
                "select wait_event_type from pg_stat_activity where pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return thread.is_alive()
            time.sleep(0.01)
    return False


def test_the_same_event_delivered_twice_at_once_is_applied_once(books, cluster, fresh_database):
    """The second delivery waits for the first, then finds it processed."""
    url = cluster.socket_url("authenticator", fresh_database)
    event = succeeded(books["payments"][1], "pi_1Books", 30000, "evt_Concurrent01")
    settings = (
        "select set_config('role', 'payment_service', true), "
        "set_config('request.jwt.claims', '{\"role\": \"payment_service\"}', true)"
    )
    with psycopg.connect(url) as first, psycopg.connect(url) as second:
        first.execute(settings)
        assert first.execute(
            "select public.apply_stripe_event(%s) ->> 'status'", (event,)
        ).fetchone() == ("processed",)
        answers: list[object] = []

        def deliver_again() -> None:
            second.execute(settings)
            row = second.execute("select public.apply_stripe_event(%s)", (event,)).fetchone()
            assert row is not None
            answers.append(row[0])
            second.commit()

        waiting = threading.Thread(target=deliver_again)
        waiting.start()
        assert waits_for_a_lock(books["admin"], second.info.backend_pid, waiting), (
            "the second delivery should wait for the first"
        )
        assert waiting.is_alive()
        first.commit()
        waiting.join(timeout=30)
    assert [a["status"] for a in answers] == ["duplicate"]  # type: ignore[index]
    with psycopg.connect(books["admin"]) as conn:
        assert conn.execute(
            "select count(*), min(status::text) from public.webhook_events "
            "where id = 'evt_Concurrent01'"
        ).fetchone() == (1, "processed")
    assert reconcile(books["admin"]) == []


def test_a_withdrawal_failed_after_its_transfer_is_reported_until_the_transfer_is_reversed(
    books, cluster, fresh_database
):
    """payout.failed puts the money back on the connected account while the wallet gets it
    back too: reported until the transfer is reversed and the reversal recorded."""
    with psycopg.connect(books["admin"], autocommit=True) as conn:
        conn.execute("set role postgres")
        conn.execute(
            "update private.settings set value = '0' "
            "where key in ('payout_hold_seconds', 'payout_method_cool_down_seconds')"
        )
        row = conn.execute(
            "select payee_id from public.milestone_payments where id = %s",
            (books["payments"][0],),
        ).fetchone()
        assert row is not None
        carl = row[0]
        method = (add_payout_method(conn, carl, "acct_Books01", "ba_Books01"),)
        # Only an account the processor verified is paid (account.updated, played here).
        verify_account(conn, "acct_Books01")
        withdrawal = conn.execute(
            "insert into public.withdrawals (user_id, payout_method_id, amount_minor, currency) "
            "values (%s, %s, 10000, 'USD') returning id, status::text",
            (carl, method[0]),
        ).fetchone()
        assert withdrawal is not None
        assert withdrawal[1] == "approved"
    failed = Jsonb(
        {
            "id": "evt_PayoutFailed01",
            "object": "event",
            "type": "payout.failed",
            # As stripe-webhook passes it on: the account by its lookup.
            "account": lookup_of("acct_Books01"),
            "data": {
                "object": {
                    "id": "po_Books01",
                    "object": "payout",
                    "amount": 10000,
                    "currency": "usd",
                    "status": "failed",
                    "failure_code": "account_closed",
                }
            },
        }
    )
    client = AppClient(cluster.socket_url("authenticator", fresh_database))
    with client.as_service("payment_service") as req:
        req.scalar("select public.record_withdrawal_transfer(%s, 'tr_Books01')", (withdrawal[0],))
        req.scalar("select public.record_withdrawal_payout(%s, 'po_Books01')", (withdrawal[0],))
        assert req.scalar("select public.apply_stripe_event(%s) ->> 'status'", (failed,)) == (
            "processed"
        )
    found = reconcile(books["admin"])
    assert [d.check for d in found] == ["open processor inconsistency"]
    assert found[0].subject.startswith("transfer_unreversed tr_Books01")
    with client.as_service("payment_service") as req:
        req.scalar(
            "select public.record_withdrawal_transfer_reversal(%s, 'trr_Books01')",
            (withdrawal[0],),
        )
    assert reconcile(books["admin"]) == []


def test_a_refused_event_is_reported_until_an_admin_settles_it(books, cluster, fresh_database):
    """A refused event that moves no money opens no inconsistency: it stays listed until an
    admin settles it in writing; a refused money event leaves the list once its inconsistency
    is resolved."""
    foreign = Jsonb(
        {
            "id": "evt_Foreign01",
            "object": "event",
            "type": "account.updated",
            "account": lookup_of("acct_Mine0001"),
            "data": {"object": {"id": lookup_of("acct_Other001"), "object": "account"}},
        }
    )
    client = AppClient(cluster.socket_url("authenticator", fresh_database))
    with client.as_service("payment_service") as req:
        assert req.scalar("select public.apply_stripe_event(%s) ->> 'status'", (foreign,)) == (
            "refused"
        )
        assert req.scalar(
            "select public.apply_stripe_event(%s) ->> 'status'",
            (succeeded(books["payments"][1], "pi_Twice02", 30000, "evt_Twice02"),),
        ) == ("refused")
    assert sorted((d.check, d.subject.split(" ")[0]) for d in reconcile(books["admin"])) == [
        ("open processor inconsistency", "charge_refused"),
        ("webhook event refused or failed", "evt_Foreign01"),
        ("webhook event refused or failed", "evt_Twice02"),
    ]
    admin = uuid.uuid4()
    tamper(
        books["admin"],
        "insert into auth.users (id, aud, role, email) values "
        f"('{admin}', 'authenticated', 'authenticated', '{admin}@example.test')",
        f"update public.users set role = 'admin' where id = '{admin}'",
    )
    with client.as_user(admin, aal="aal2", role="admin") as req:
        settled = req.scalar(
            "select public.settle_webhook_event('evt_Foreign01', "
            "'Not our connected account: nothing to do.')"
        )
        assert settled["kind"] == "webhook_event_refused"
        inconsistency = req.scalar(
            "select id from public.processor_inconsistencies where processor_object_id = "
            "'pi_Twice02'"
        )
        resolved = req.scalar(
            "select public.resolve_processor_inconsistency(%s, 'Refunded by hand from the "
            "dashboard.')",
            (inconsistency,),
        )
        assert resolved["resolved_at"] is not None
    assert reconcile(books["admin"]) == []


def test_a_posted_ledger_correction_reconciles(cluster, books, fresh_database):
    """Two admins correct the books (one proposes, the other approves): the correcting
    transfer is new and balanced, and the money still adds up."""
    ada, abe = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(books["admin"], autocommit=True) as conn:
        conn.execute("set role postgres")
        for admin in (ada, abe):
            conn.execute(
                "insert into auth.users (id, aud, role, email) "
                "values (%s, 'authenticated', 'authenticated', %s)",
                (admin, f"{admin}@example.test"),
            )
        conn.execute("update public.users set role = 'admin' where id in (%s, %s)", (ada, abe))
        row = conn.execute(
            "select (select id from private.ledger_accounts where kind = 'platform_fees' "
            "and currency = 'USD'), (select id from private.ledger_accounts "
            "where kind = 'user_wallet' and currency = 'USD')"
        ).fetchone()
    assert row is not None
    fees, wallet = row
    client = AppClient(cluster.socket_url("authenticator", fresh_database))
    with client.as_user(ada, aal="aal2", role="admin") as req:
        proposal = req.rpc(
            "propose_ledger_correction",
            fees,
            wallet,
            700,
            "USD",
            "The fee on the release was charged at the wrong rate",
        )
    with client.as_user(abe, aal="aal2", role="admin") as req:
        approved = req.rpc(
            "approve_ledger_correction", proposal["id"], "Checked against the fee schedule"
        )
    assert approved["status"] == "posted"
    assert approved["transfer_id"] is not None
    assert reconcile(books["admin"]) == []
    with psycopg.connect(books["admin"], autocommit=True) as conn:
        posted = conn.execute(
            "select code, amount from private.ledger_transfers where id = %s",
            (approved["transfer_id"],),
        ).fetchone()
    assert posted == ("ledger_correction", 700)
