"""Refunds at the border with Stripe, end to end: what payguard decides to give back reaches
the payer's card, and what Stripe takes back holds the escrow.

- A dispute that staff resolve as a refund or a split owes the payer a refund (the whole charge,
  or their share): reported by `payguard reconcile` (owed) and `reconcile --stripe` (not made)
  until the served `refunds` function sends it and Stripe's charge.refunded confirms it; then
  both sides are clean.
- A charge the database refused (the payment canceled before its webhook) is recovered by
  `payguard stripe recover` and by the function, which sends its refund under the recovery's
  key; charge.refunded settles it.
- A partial refund made at Stripe of a funded payment is refused, reported on both sides, and
  holds the payment in escrow: the payer's release is refused (409) until operations resolve
  the inconsistency; then it is released.

Real PaymentIntents on the local Stripe, the functions served by Deno, Stripe's own signed
webhooks held in a sink and passed on to the served `stripe-webhook` by each test."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.jwt import api_key
from payguard.reconcile import reconcile
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.client import ApiError
from payguard.testing.stripe_flow import Flow, Stage


@pytest.fixture(scope="module")
def stage_settings() -> dict[str, str]:
    """Refunds are retried at once: the recovery tests run the refunds function again."""
    return {"refund_retry_seconds": "0"}


def mentioning(found: list[Any], *texts: str) -> list[str]:
    return sorted(d.check for d in found if any(t in d.subject for t in texts))


def funded(stage: Stage, amount: int = 30_000) -> tuple[Flow, str, str]:
    """A payment funded by a real PaymentIntent; the flow, the intent and its charge."""
    flow = stage.flow(amount)
    intent = flow.charge()
    assert stage.deliver(stage.captured("payment_intent.succeeded", intent))["status"] == (
        "processed"
    )
    charge = stage.border.stripe.v1.payment_intents.retrieve(intent).latest_charge
    return flow, intent, charge if isinstance(charge, str) else charge.id


def decided(stage: Stage, flow: Flow, outcome: str, share: int | None = None) -> None:
    """The payer disputes the payment; an admin (not a party) resolves it as `outcome`."""
    border = stage.border
    admin = border.make_user("ops", "admin")
    with border.user_request(flow.ids["homeowner"]) as req:
        req.rpc("open_dispute", flow.ids["payment"], "The work was never done", f"d-{uuid.uuid4()}")
    dispute = border.scalar(
        "select id from public.disputes where milestone_payment_id = %s", (flow.ids["payment"],)
    )
    with border.user_request(admin, role="admin") as req:
        req.rpc(
            "resolve_dispute",
            dispute,
            outcome,
            "Checked the evidence: the contractor never came",
            f"r-{uuid.uuid4()}",
            share,
        )


def send_refunds(stage: Stage, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = stage.border.functions.call("refunds", body or {}, token=api_key("service_role"))
    assert answer.status == 200, answer
    assert isinstance(answer.body, dict)
    return answer.body


def obligation(stage: Stage, payment: uuid.UUID) -> tuple[str, str, int]:
    with stage.border.sql() as conn:
        row = conn.execute(
            "select id::text, status, amount_minor from private.refund_obligations "
            "where milestone_payment_id = %s",
            (payment,),
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


@pytest.mark.parametrize(
    ("outcome", "share", "refunded"), [("refund", None, 30_000), ("split", 10_000, 20_000)]
)
def test_a_refund_decided_by_staff_reaches_the_card_and_is_reported_until_then(
    stage, stripe_client, outcome, share, refunded
):
    flow, intent, charge = funded(stage)
    payment = flow.ids["payment"]
    decided(stage, flow, outcome, share)
    assert stage.border.payment_status(payment) == ("refunded" if outcome == "refund" else "split")
    owed, status, amount = obligation(stage, payment)
    assert (status, amount) == ("due", refunded)

    # Until Stripe refunds it, both sides say so.
    assert mentioning(reconcile(stage.admin_url), intent) == ["refund owed and not confirmed"]
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), str(payment)) == [
        "refund and payment differ"
    ]

    answer = send_refunds(stage, {"refund_obligation_id": owed})
    [result] = answer["results"]
    assert (result["status"], result["payment_intent_id"]) == ("sent", intent), answer
    refund = stripe_client.v1.refunds.retrieve(result["refund_id"])
    assert (refund.amount, refund.payment_intent) == (refunded, intent)
    assert refund.metadata.to_dict() == {
        "refund_obligation_id": owed,
        "milestone_payment_id": str(payment),
    }
    assert stripe_client.v1.charges.retrieve(charge).amount_refunded == refunded
    assert obligation(stage, payment)[1] == "sent"
    # Sent once: the next run has nothing of this payment's to send.
    again = stage.border.functions.call(
        "refunds", {"refund_obligation_id": owed}, token=api_key("service_role")
    )
    assert again.status == 404, again

    assert stage.deliver(stage.captured("charge.refunded", charge))["status"] == "processed"
    assert obligation(stage, payment)[1] == "confirmed"
    assert mentioning(reconcile(stage.admin_url), intent, str(payment)) == []
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), str(payment), charge) == []
    stage.assert_ledger_reconciles()


def test_a_refund_whose_answer_was_lost_is_made_once(stage, stripe_client):
    """Stripe made the refund but its answer never came back (here: the refund made under the
    obligation's key before the function runs): the function's request, under the same key, gets
    Stripe's replay, and records it; the card is refunded once."""
    flow, intent, _ = funded(stage)
    decided(stage, flow, "refund")
    owed, _, _ = obligation(stage, flow.ids["payment"])
    key = f"milestone_payment:{flow.ids['payment']}:refund"
    first = stripe_client.v1.refunds.create(
        {
            "payment_intent": intent,
            "amount": flow.amount,
            "metadata": {
                "refund_obligation_id": owed,
                "milestone_payment_id": str(flow.ids["payment"]),
            },
        },
        {"idempotency_key": key},
    )
    [result] = send_refunds(stage, {"refund_obligation_id": owed})["results"]
    assert result["refund_id"] == first.id
    assert [r.id for r in stripe_client.v1.refunds.list({"payment_intent": intent}).data] == [
        first.id
    ]


def test_a_refused_charge_is_recovered_and_refunded_by_the_cli_and_the_function(
    stage, stripe_client, admin_url
):
    flow = stage.flow()
    payment = flow.ids["payment"]
    intent = flow.charge()
    with stage.border.user_request(flow.ids["homeowner"]) as req:
        req.rpc("cancel_milestone_payment", payment, f"cancel-{uuid.uuid4()}")
    assert stage.deliver(stage.captured("payment_intent.succeeded", intent))["status"] == "refused"
    inconsistency = str(
        stage.border.scalar(
            "select id from public.processor_inconsistencies where processor_object_id = %s",
            (intent,),
        )
    )

    # Operations run the recovery: the payment is canceled, so the charge is owed back.
    result = CliRunner().invoke(app, ["stripe", "recover", "--json", "--db-url", admin_url])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    [mine] = [r for r in report["recoveries"] if r["inconsistency_id"] == inconsistency]
    assert (mine["recovery"], mine["resolved"]) == ("refund", False)
    key = f"processor_inconsistency:{inconsistency}:refund"
    assert mine["refund_idempotency_key"] == key
    assert [
        d["idempotency_key"] for d in report["refunds_due"] if d["payment_intent_id"] == intent
    ] == [key]
    assert mentioning(reconcile(stage.admin_url), intent) == [
        "open processor inconsistency",
        "refund owed and not confirmed",
        "webhook event refused or failed",
    ]

    # The function sends it, under the recovery's key; charge.refunded settles everything.
    answer = send_refunds(stage)
    [sent] = [r for r in answer["results"] if r["payment_intent_id"] == intent]
    assert sent["status"] == "sent", answer
    refund = stripe_client.v1.refunds.retrieve(sent["refund_id"])
    assert refund.metadata.to_dict()["processor_inconsistency_id"] == inconsistency
    charge = refund.charge if isinstance(refund.charge, str) else refund.charge.id
    assert stage.deliver(stage.captured("charge.refunded", charge))["status"] == "processed"
    # Settled: the inconsistency, the refund owed and the refused event that opened them.
    assert mentioning(reconcile(stage.admin_url), intent) == []
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), charge) == []


def test_a_partial_refund_holds_the_payment_until_operations_settle_it(stage, stripe_client):
    border = stage.border
    flow, intent, charge = funded(stage)
    payment = flow.ids["payment"]
    stripe_client.v1.refunds.create({"payment_intent": intent, "amount": 10_000})
    refused = stage.deliver(stage.captured("charge.refunded", charge))
    assert (refused["status"], refused["error"]["code"]) == ("refused", "PT422"), refused
    assert mentioning(reconcile(stage.admin_url), charge) == [
        "open processor inconsistency",
        "webhook event refused or failed",
    ]
    found = [
        d for d in reconcile_stripe(stage.admin_url, stripe_client) if str(payment) in d.subject
    ]
    assert [d.check for d in found] == ["payment held with its charge refunded"]
    assert "in part, 10000 of 30000" in found[0].subject

    # The payer cannot release money the charge no longer holds, its milestone submitted.
    flow.submit()
    with (
        pytest.raises(ApiError) as refusal,
        border.user_request(flow.ids["homeowner"]) as req,
    ):
        req.rpc("release_milestone_payment", payment, f"rel-{uuid.uuid4()}")
    assert (refusal.value.status, refusal.value.sqlstate) == (409, "PT409")
    assert border.payment_status(payment) == "funded"

    # Operations settle it in writing; the release then goes through.
    admin = border.make_user("ops", "admin")
    inconsistency = border.scalar(
        "select id from public.processor_inconsistencies where processor_object_id = %s", (charge,)
    )
    with border.user_request(admin, role="admin") as req:
        req.rpc(
            "resolve_processor_inconsistency",
            inconsistency,
            "The payer agreed to 10000 back; the rest is the contractor's, ticket 881",
        )
    with border.user_request(flow.ids["homeowner"]) as req:
        req.rpc("release_milestone_payment", payment, f"rel-{uuid.uuid4()}")
    assert border.payment_status(payment) == "released"
