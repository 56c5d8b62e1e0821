"""Attacks on the webhook, end to end: deliveries POSTed to the served `stripe-webhook`
function, which checks their signature and hands them to the database. Here the local Stripe
delivers its events to a sink instead, so that each test decides what reaches the function,
when and how often: the events are Stripe's own (real PaymentIntents, refunds, payouts),
signed by it with the endpoint's secret. A forged, re-keyed, stale, missing or tampered
signature is refused (400) and writes nothing; a replayed or concurrently duplicated event is
applied once; out-of-order events and an event for another amount or currency are refused by
the database's transitions and reported. After each, the ledger reconciles (`payguard
reconcile`'s ledger checks; refused events and open inconsistencies are reported by design)."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from payguard.reconcile import reconcile
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.stripe_flow import (
    Flow,
    Stage,
    post_event,
    signature,
)


def test_forged_rekeyed_stale_missing_or_tampered_signatures_are_refused_and_write_nothing(stage):
    flow = stage.flow()
    intent = flow.charge()
    genuine = stage.captured("payment_intent.succeeded", intent)
    event_id, body, now = genuine.event["id"], genuine.body, int(time.time())
    tampered = body.replace(b'"amount": 30000', b'"amount": 30001')
    assert tampered != body
    attempts = {
        "forged": (body, f"t={now},v1={'5' * 64}"),
        "the wrong secret": (body, signature(body, f"whsec_{uuid.uuid4().hex}")),
        "stale (301 s old)": (body, signature(body, stage.secret, now - 301)),
        # Well past the 300 s allowed, since the clock moves on while the attempts are sent.
        "from the future (330 s ahead)": (body, signature(body, stage.secret, now + 330)),
        "missing": (body, None),
        "malformed": (body, "v1=not-a-signature"),
        "a v0 scheme only": (body, signature(body, stage.secret).replace("v1=", "v0=")),
        "a tampered body": (tampered, genuine.signature),
    }
    for name, (sent, header) in attempts.items():
        answer = post_event(stage.url, sent, header)
        assert answer.status == 400, (name, answer.status, answer.body)
        assert isinstance(answer.body, dict), name
        assert answer.body.get("message"), name
    assert stage.recorded(event_id) == 0, "a refused delivery wrote the event"
    assert stage.border.payment_status(flow.ids["payment"]) == "pending"
    assert stage.border.escrow_balance(flow.ids["escrow"]) == 0
    stage.assert_ledger_reconciles()

    assert stage.deliver(genuine)["status"] == "processed"
    assert stage.border.payment_status(flow.ids["payment"]) == "funded"
    stage.assert_ledger_reconciles()


def test_a_replayed_event_is_acknowledged_and_changes_nothing(stage, stripe_test_api):
    flow = stage.flow()
    genuine = stage.captured("payment_intent.succeeded", flow.charge())
    event_id = genuine.event["id"]
    assert stage.deliver(genuine)["status"] == "processed"
    # An attacker replays what they captured, within the tolerance; Stripe resends it.
    assert stage.deliver(genuine)["status"] == "duplicate"
    stripe_test_api.deliver_again(event_id)
    resent = stage.next_delivery(event_id)
    assert resent.body == genuine.body, "a resend is the same event"
    assert stage.deliver(resent)["status"] == "duplicate"
    assert stage.recorded(event_id) == 1
    assert stage.fundings(flow.ids["payment"]) == 1
    assert stage.border.escrow_balance(flow.ids["escrow"]) == flow.amount
    stage.assert_ledger_reconciles()


def test_the_same_event_delivered_concurrently_is_applied_once(stage):
    flow = stage.flow()
    genuine = stage.captured("payment_intent.succeeded", flow.charge())
    copies = 8
    start = threading.Barrier(copies)
    answers: list[Any] = [None] * copies

    def send(number: int) -> None:
        start.wait()
        answers[number] = post_event(stage.url, genuine.body, genuine.signature)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == [200] * copies, [a.body for a in answers]
    statuses = sorted(a.body["status"] for a in answers)
    assert statuses == ["duplicate"] * (copies - 1) + ["processed"], statuses
    assert stage.recorded(genuine.event["id"]) == 1
    assert stage.fundings(flow.ids["payment"]) == 1
    assert stage.border.escrow_balance(flow.ids["escrow"]) == flow.amount
    stage.assert_ledger_reconciles()


def test_a_succeeded_intent_delivered_after_its_refund_is_refused_and_reported(
    stage, stripe_client
):
    flow, intent = refunded_before_success(stage, stripe_client)
    assert stage.border.payment_status(flow.ids["payment"]) != "funded"
    assert stage.fundings(flow.ids["payment"]) == 0
    assert stage.border.escrow_balance(flow.ids["escrow"]) == 0
    assert stage.open_inconsistencies(intent) == ["charge_refused"]
    reported = [
        d.subject for d in reconcile(stage.admin_url) if d.check == "open processor inconsistency"
    ]
    assert any(intent in s for s in reported), reported
    stage.assert_ledger_reconciles()


def refunded_before_success(stage: Stage, stripe_client: Any) -> tuple[Flow, str]:
    """A payment charged, its charge refunded on Stripe, and the events delivered out of order
    (charge.refunded, then payment_intent.succeeded): both refused, the late success recorded
    as a charge_refused inconsistency. The flow and the intent."""
    flow = stage.flow()
    intent = flow.charge()
    succeeded = stage.captured("payment_intent.succeeded", intent)
    latest = stripe_client.v1.payment_intents.retrieve(intent).latest_charge
    charge = latest if isinstance(latest, str) else latest.id
    stripe_client.v1.refunds.create({"payment_intent": intent})
    refunded = stage.captured("charge.refunded", charge)
    first = stage.deliver(refunded)
    assert (first["status"], first["error"]["code"]) == ("refused", "PT404"), first
    late = stage.deliver(succeeded)
    assert (late["status"], late["error"]["code"]) == ("refused", "PT409"), late
    return flow, intent


def test_recovering_a_success_that_came_after_its_refund_does_not_fund_the_payment(
    stage, stripe_client, client
):
    flow, intent = refunded_before_success(stage, stripe_client)
    inconsistency = stage.border.scalar(
        "select id from public.processor_inconsistencies where processor_object_id = %s",
        (intent,),
    )
    with client.as_service("payment_service") as req:
        answer = req.rpc("recover_processor_inconsistency", inconsistency)
    # The processor's refund is the recovery: nothing is funded, nothing is to be sent.
    assert (answer["recovery"], answer["resolved"]) == ("refund", True), answer
    assert stage.border.payment_status(flow.ids["payment"]) != "funded", (
        "funded by a charge the payer has back"
    )
    assert stage.fundings(flow.ids["payment"]) == 0


def test_reconcile_stripe_reports_a_funded_payment_whose_charge_was_refunded(stage, stripe_client):
    flow = stage.flow()
    intent = flow.charge()
    assert stage.deliver(stage.captured("payment_intent.succeeded", intent))["status"] == (
        "processed"
    )
    stripe_client.v1.refunds.create({"payment_intent": intent})
    # charge.refunded is lost on the way: payguard still holds the money in escrow.
    found = reconcile_stripe(stage.admin_url, stripe_client)
    assert any(str(flow.ids["payment"]) in d.subject for d in found), found


@pytest.mark.parametrize(
    ("amount", "currency"), [(29_999, "usd"), (30_000, "eur")], ids=["amount", "currency"]
)
def test_a_valid_event_for_another_amount_or_currency_is_refused_reported_and_recovered(
    stage, stripe_client, amount, currency
):
    flow = stage.flow(30_000)
    # A genuine PaymentIntent naming the payment, for another amount or currency.
    intent = stripe_client.v1.payment_intents.create(
        {
            "amount": amount,
            "currency": currency,
            "customer": flow.ids["customer"],
            "payment_method": flow.ids["card"],
            "confirm": True,
            "metadata": {"milestone_payment_id": str(flow.ids["payment"])},
        }
    )
    assert intent.status == "succeeded"
    answer = stage.deliver(stage.captured("payment_intent.succeeded", intent.id))
    assert answer["status"] == "refused", answer
    assert answer["error"]["code"].startswith("PT"), answer
    assert stage.border.payment_status(flow.ids["payment"]) == "pending"
    assert stage.fundings(flow.ids["payment"]) == 0
    assert stage.open_inconsistencies(intent.id) == ["charge_refused"]
    stage.assert_ledger_reconciles()

    # Recovery: the charge cannot fund this payment; it is refunded, and its refund closes
    # the inconsistency.
    charge = intent.latest_charge if isinstance(intent.latest_charge, str) else None
    charge = charge or stripe_client.v1.payment_intents.retrieve(intent.id).latest_charge
    charge_id = charge if isinstance(charge, str) else charge.id
    stripe_client.v1.refunds.create({"payment_intent": intent.id})
    assert stage.deliver(stage.captured("charge.refunded", charge_id))["status"] == "processed"
    assert stage.open_inconsistencies(intent.id) == []
    assert stage.border.payment_status(flow.ids["payment"]) == "pending"
    stage.assert_ledger_reconciles()


def test_a_payout_paid_before_its_withdrawal_is_approved_moves_nothing(stage, stripe_client):
    border = stage.border
    flow = Flow(border)
    flow.parties()
    contractor, amount = flow.ids["contractor"], 600_000
    stage.ready_to_withdraw(flow, amount)
    account = stripe_client.v1.accounts.retrieve(flow.ids["account"])
    flow.withdraw()
    withdrawal = flow.ids["withdrawal"]
    assert border.withdrawal_status(withdrawal) == "requested", "it needs two approvals"

    # A payout on the contractor's account that names the withdrawal, paid before approval.
    stripe_client.v1.transfers.create(
        {"amount": amount, "currency": "usd", "destination": account.id}
    )
    early = stripe_client.v1.payouts.create(
        {"amount": amount, "currency": "usd", "metadata": {"withdrawal_id": str(withdrawal)}},
        {"stripe_account": account.id},
    )
    border.stripe_api.settle_payout(early.id, "paid")
    answer = stage.deliver(stage.captured("payout.paid", early.id))
    # No withdrawal recorded the payout: whatever its metadata names, it is ignored.
    assert answer["status"] == "ignored", answer
    assert stage.open_inconsistencies(early.id) == []
    assert border.withdrawal_status(withdrawal) == "requested"
    assert border.wallet(contractor)["reserved_minor"] == amount, "still reserved, not paid"
    stage.assert_ledger_reconciles()
    found = reconcile_stripe(stage.admin_url, stripe_client)
    assert [d.check for d in found if early.id in d.subject] == ["payout with no withdrawal"]

    # Approved and paid out as it should be, it completes.
    flow.approve()
    flow.pay_out()
    border.stripe_api.settle_payout(flow.ids["payout"], "paid")
    assert stage.deliver(stage.captured("payout.paid", flow.ids["payout"]))["status"] == (
        "processed"
    )
    assert border.withdrawal_status(withdrawal) == "paid"
    assert border.wallet(contractor)["posted_minor"] == 0
    stage.assert_ledger_reconciles()
