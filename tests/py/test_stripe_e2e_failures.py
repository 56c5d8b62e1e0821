"""Failures at the border with Stripe, end to end: Stripe unreachable while a payment is
funded and while a withdrawal is paid out (the same functions served a second time, pointed
at a closed port), and the database refusing a charge Stripe already made (the payment
canceled between the charge and its webhook; a trigger refusing the funding). Nothing is
charged or paid twice, nothing is funded without a charge, each inconsistency is reported by
`payguard reconcile` and `reconcile --stripe`, and the recovery path puts it right. Stripe's
webhooks are held back in a sink and passed on to the served `stripe-webhook` by each test."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from payguard.jwt import api_key
from payguard.reconcile import reconcile
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.local_stack import FunctionsClient
from payguard.testing.stripe_flow import Flow, Stage


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cut_off(stage, serve_functions, database) -> FunctionsClient:
    """milestone-payments and payouts served again, their Stripe a port nothing listens on."""
    return FunctionsClient(
        serve_functions(
            database,
            names=["milestone-payments", "payouts"],
            extra_env={"STRIPE_API_BASE": f"http://127.0.0.1:{closed_port()}"},
        )
    )


def intents_naming(stripe_client, payment: uuid.UUID) -> list[str]:
    """Stripe's PaymentIntents whose metadata names the payment."""
    listed = stripe_client.v1.payment_intents.list({"limit": 100})
    return [
        i.id
        for i in listed.auto_paging_iter()
        if i.metadata is not None
        and i.metadata.to_dict().get("milestone_payment_id") == str(payment)
    ]


def mentioning(found: list[Any], text: str) -> list[str]:
    return [d.check for d in found if text in d.subject]


def test_stripe_unreachable_while_funding_charges_nothing_and_a_retry_charges_once(
    stage, cut_off, stripe_client
):
    flow = stage.flow()
    payment = flow.ids["payment"]
    body = {
        "milestone_payment_id": str(payment),
        "payment_method_id": str(flow.ids["payment_method"]),
    }
    answer = cut_off.call("milestone-payments", body, user=flow.ids["homeowner"], aal="aal2")
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "processor_unavailable", answer.body
    assert stage.border.payment_status(payment) == "pending"
    assert stage.fundings(payment) == 0
    assert intents_naming(stripe_client, payment) == []

    # The payer tries again once Stripe answers: one charge, funded by its webhook.
    intent = flow.charge()
    assert intents_naming(stripe_client, payment) == [intent]
    assert stage.deliver(stage.captured("payment_intent.succeeded", intent))["status"] == (
        "processed"
    )
    assert stage.border.payment_status(payment) == "funded"
    assert stage.fundings(payment) == 1
    # A retried request after success charges nothing more.
    again = stage.border.functions.call(
        "milestone-payments", body, user=flow.ids["homeowner"], aal="aal2"
    )
    assert (again.status, again.body["code"]) == (409, "PT409"), again.body
    assert intents_naming(stripe_client, payment) == [intent]
    stage.assert_ledger_reconciles()
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), intent) == []


def test_stripe_unreachable_while_paying_out_keeps_the_reservation_and_a_retry_pays_once(
    stage, cut_off, stripe_client, stripe_test_api
):
    flow = Flow(stage.border)
    flow.parties()
    stage.ready_to_withdraw(flow, 20_000)
    flow.withdraw()
    withdrawal, account = flow.ids["withdrawal"], flow.ids["account"]
    assert stage.border.withdrawal_status(withdrawal) == "approved", "below dual control"
    service = api_key("service_role")

    answer = cut_off.call("payouts", {"withdrawal_id": str(withdrawal)}, token=service)
    assert answer.status == 502, answer.body
    [result] = answer.body["results"]
    assert result["stage"] == "transfer", result
    assert stage.border.withdrawal_status(withdrawal) == "approved", "still due"
    assert stage.border.wallet(flow.ids["contractor"])["reserved_minor"] == 20_000
    assert stripe_client.v1.transfers.list({"destination": account}).data == []

    flow.pay_out()
    assert [t.amount for t in stripe_client.v1.transfers.list({"destination": account}).data] == [
        20_000
    ]
    again = stage.border.functions.call(
        "payouts", {"withdrawal_id": str(withdrawal)}, token=service
    )
    assert again.status == 404, again.body
    payouts = stripe_client.v1.payouts.list({}, {"stripe_account": account}).data
    assert [p.id for p in payouts] == [flow.ids["payout"]], "paid out once"
    assert len(stripe_client.v1.transfers.list({"destination": account}).data) == 1

    stripe_test_api.settle_payout(flow.ids["payout"], "paid")
    assert stage.deliver(stage.captured("payout.paid", flow.ids["payout"]))["status"] == (
        "processed"
    )
    assert stage.border.withdrawal_status(withdrawal) == "paid"
    stage.assert_ledger_reconciles()
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), str(withdrawal)) == []


def recover(client, inconsistency: Any) -> dict[str, Any]:
    with client.as_service("payment_service") as req:
        answer = req.rpc("recover_processor_inconsistency", inconsistency)
    assert isinstance(answer, dict)
    return answer


def inconsistency_of(stage: Stage, intent: str) -> Any:
    return stage.border.scalar(
        "select id from public.processor_inconsistencies "
        "where processor_object_id = %s and kind = 'charge_refused'",
        (intent,),
    )


def test_a_charge_for_a_payment_canceled_before_its_webhook_is_reported_and_refunded(
    stage, client, stripe_client
):
    flow = stage.flow()
    payment = flow.ids["payment"]
    intent = flow.charge()
    # The payer cancels while Stripe's webhook is on its way.
    with stage.border.user_request(flow.ids["homeowner"]) as req:
        req.rpc("cancel_milestone_payment", payment, f"cancel-{uuid.uuid4()}")
    assert stage.border.payment_status(payment) == "canceled"
    answer = stage.deliver(stage.captured("payment_intent.succeeded", intent))
    assert answer["status"] == "refused", answer
    assert stage.border.payment_status(payment) == "canceled"
    assert stage.fundings(payment) == 0
    stage.assert_ledger_reconciles()

    # Reported on both sides, with Stripe's ids.
    assert "open processor inconsistency" in mentioning(reconcile(stage.admin_url), intent)
    charge = stripe_client.v1.payment_intents.retrieve(intent).latest_charge
    charge_id = charge if isinstance(charge, str) else charge.id
    found = reconcile_stripe(stage.admin_url, stripe_client)
    assert mentioning(found, charge_id) == ["charge with no funded payment"], found

    # Recovery: the payment cannot be funded any more, so the charge is refunded (once, even
    # if the refund is sent twice), and its charge.refunded settles the inconsistency.
    recovery = recover(client, inconsistency_of(stage, intent))
    assert recovery["recovery"] == "refund", recovery
    key = recovery["refund_idempotency_key"]
    refunds = [
        stripe_client.v1.refunds.create({"payment_intent": intent}, {"idempotency_key": key}).id
        for _ in range(2)
    ]
    assert refunds[0] == refunds[1], "the same key replays the first refund"
    assert stripe_client.v1.charges.retrieve(charge_id).amount_refunded == flow.amount
    assert stage.deliver(stage.captured("charge.refunded", charge_id))["status"] == "processed"
    # Settled: the resolved inconsistency names the refused event, which leaves the report
    # with it.
    assert mentioning(reconcile(stage.admin_url), intent) == []
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), charge_id) == []
    stage.assert_ledger_reconciles()


@pytest.fixture
def refuse_funding(stage) -> Iterator[Any]:
    """refuse_funding(payment): a trigger refuses to fund that payment (PT409) until the test
    ends."""
    created: list[str] = []

    def install(payment: uuid.UUID) -> None:
        name = f"test_refuse_{payment.hex[:12]}"
        with stage.border.sql() as conn:
            conn.execute(
                f"create function public.{name}() returns trigger language plpgsql as $$ "
                "begin raise exception 'funding refused for the test' using errcode = 'PT409'; "
                "end $$"
            )
            conn.execute(
                f"create trigger {name} before update on public.milestone_payments "
                f"for each row when (new.id = '{payment}' and new.status = 'funded') "
                f"execute function public.{name}()"
            )
        created.append(name)

    yield install
    with stage.border.sql() as conn:
        for name in created:
            conn.execute(f"drop trigger if exists {name} on public.milestone_payments")
            conn.execute(f"drop function if exists public.{name}()")


def test_a_charge_the_database_refused_is_reported_and_funds_the_payment_on_recovery(
    stage, client, stripe_client, refuse_funding
):
    flow = stage.flow()
    payment = flow.ids["payment"]
    refuse_funding(payment)
    intent = flow.charge()
    answer = stage.deliver(stage.captured("payment_intent.succeeded", intent))
    assert (answer["status"], answer["error"]["code"]) == ("refused", "PT409"), answer
    assert stage.border.payment_status(payment) == "pending"
    assert stage.fundings(payment) == 0
    assert "open processor inconsistency" in mentioning(reconcile(stage.admin_url), intent)
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), intent) == [
        "charge with no funded payment"
    ]
    stage.assert_ledger_reconciles()

    # The database accepts again: the payment is still fundable, so recovery funds it with
    # that charge, once.
    with stage.border.sql() as conn:
        conn.execute(f"drop trigger test_refuse_{payment.hex[:12]} on public.milestone_payments")
    recovery = recover(client, inconsistency_of(stage, intent))
    assert (recovery["recovery"], recovery["resolved"]) == ("fund", True), recovery
    assert stage.border.payment_status(payment) == "funded"
    assert stage.fundings(payment) == 1
    assert stage.border.escrow_balance(flow.ids["escrow"]) == flow.amount
    # Settled: the resolved inconsistency names the refused event, which leaves the report
    # with it.
    assert mentioning(reconcile(stage.admin_url), intent) == []
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), intent) == []
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), str(payment)) == []
    stage.assert_ledger_reconciles()
