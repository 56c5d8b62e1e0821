"""Stripe's events in any order, and events whose text the database cannot hold, through the
served `stripe-webhook` with real deliveries of the local Stripe (held in a sink, passed on
when each test wants):

- a chargeback delivered before its payment's success: the success funds and disputes the
  payment in one transaction (no release while the chargeback is open), its decision then
  refunds it, and both reconciliations are clean; a chargeback payguard could not apply (over
  a released payment) is reported by `reconcile --stripe`;
- `account.updated` delivered swapped: the older word is ignored, in either order;
- a signed event with a NUL or a lone surrogate in the payer's text: applied once, with those
  characters replaced, and nothing left to report."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from payguard.reconcile import reconcile
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.client import ApiError
from payguard.testing.local_stack import Delivery
from payguard.testing.stripe_flow import Flow, Stage, post_event, signature


def charge_of(stripe_client: Any, intent: str) -> str:
    latest = stripe_client.v1.payment_intents.retrieve(intent).latest_charge
    return str(latest if isinstance(latest, str) else latest.id)


def chargeback_differences(stage: Stage, stripe_client: Any, *subjects: str) -> list[str]:
    return [
        d.subject
        for d in reconcile_stripe(stage.admin_url, stripe_client)
        if d.check == "chargeback and payment differ" and any(s in d.subject for s in subjects)
    ]


def open_reports(stage: Stage, *subjects: str) -> list[str]:
    """What `payguard reconcile` reports about `subjects` (ids)."""
    return [d.subject for d in reconcile(stage.admin_url) if any(s in d.subject for s in subjects)]


def test_a_chargeback_before_its_success_disputes_the_payment_it_funds(
    stage, stripe_client, stripe_test_api
):
    b = stage.border
    flow = stage.flow(30_000)
    intent = flow.charge()
    succeeded = stage.captured("payment_intent.succeeded", intent)
    dispute = stripe_test_api.dispute(charge_of(stripe_client, intent))
    created = stage.captured("charge.dispute.created", dispute["id"])

    first = stage.deliver(created)
    assert (first["status"], first["error"]["code"]) == ("refused", "PT404"), first
    assert stage.open_inconsistencies(dispute["id"]) == ["chargeback_refused"]
    late = stage.deliver(succeeded)
    assert late["status"] == "processed", late
    payment = flow.ids["payment"]
    assert b.payment_status(payment) == "disputed"
    assert (
        b.scalar(
            "select processor_dispute_id from public.disputes where milestone_payment_id = %s",
            (payment,),
        )
        == dispute["id"]
    )
    assert stage.open_inconsistencies(dispute["id"]) == []
    assert stage.fundings(payment) == 1

    with b.user_request(flow.ids["homeowner"]) as req, pytest.raises(ApiError) as refused:
        req.rpc("release_milestone_payment", payment, f"rel-{uuid.uuid4()}")
    assert refused.value.status == 404, refused.value
    assert b.payment_status(payment) == "disputed", "no release while the chargeback is open"
    assert chargeback_differences(stage, stripe_client, dispute["id"]) == []

    stripe_test_api.decide_dispute(dispute["id"], "lost")
    closed = stage.deliver(stage.captured("charge.dispute.closed", dispute["id"]))
    assert closed["status"] == "processed", closed
    assert b.payment_status(payment) == "refunded"
    assert open_reports(stage, dispute["id"], intent, str(payment)) == []
    assert chargeback_differences(stage, stripe_client, dispute["id"]) == []
    stage.assert_ledger_reconciles()


def test_a_chargeback_payguard_could_not_apply_is_reported_by_reconcile_stripe(
    stage, stripe_client, stripe_test_api
):
    b = stage.border
    flow = stage.flow(30_000)
    intent = flow.charge()
    assert stage.deliver(stage.captured("payment_intent.succeeded", intent))["status"] == (
        "processed"
    )
    flow.submit()
    with b.user_request(flow.ids["homeowner"]) as req:
        req.rpc("release_milestone_payment", flow.ids["payment"], f"rel-{uuid.uuid4()}")
    dispute = stripe_test_api.dispute(charge_of(stripe_client, intent))
    refused = stage.deliver(stage.captured("charge.dispute.created", dispute["id"]))
    assert refused["status"] == "refused", refused
    assert chargeback_differences(stage, stripe_client, dispute["id"]) == [
        f"{dispute['id']} (needs_response, charge {dispute['charge']}, payment intent {intent}): "
        f"payment {flow.ids['payment']} is released"
    ]


def account_update(stage: Stage, account: str, *, payouts: bool) -> Delivery:
    """Stripe's account.updated of `account` after its verification (payouts enabled) or its
    restriction (payouts disabled for a document due)."""

    def match(event: dict[str, Any]) -> bool:
        obj = event["data"]["object"]
        return (
            event["type"] == "account.updated"
            and obj["id"] == account
            and bool(obj["payouts_enabled"]) == payouts
            and (
                payouts
                or "individual.verification.document" in obj["requirements"]["currently_due"]
            )
        )

    return stage.sink.wait_for(match)


def next_second() -> None:
    """Wait for Stripe's clock, which counts whole seconds, to tick: the next event's `created`
    is later than the last one's."""
    now = time.time()
    time.sleep(int(now) + 1.05 - now)


@pytest.mark.parametrize("delivered", ["swapped", "in order"])
def test_account_updated_keeps_the_processors_latest_word(stage, stripe_client, delivered):
    b = stage.border
    flow = Flow(b)
    flow.parties()
    contractor = flow.ids["contractor"]
    account = b.onboard(contractor)
    method = b.add_payout_method(contractor, account, "USD")
    next_second()
    b.stripe_api.verify_account(account, "verified")
    verified = account_update(stage, account, payouts=True)
    next_second()
    b.stripe_api.verify_account(account, "restricted")
    restricted = account_update(stage, account, payouts=False)
    assert restricted.event["created"] > verified.event["created"]
    assert stripe_client.v1.accounts.retrieve(account).payouts_enabled is False

    first, second = (restricted, verified) if delivered == "swapped" else (verified, restricted)
    answers = [stage.deliver(first)["status"], stage.deliver(second)["status"]]
    assert answers == (["processed", "ignored"] if delivered == "swapped" else ["processed"] * 2)
    assert (
        b.scalar("select verification_status from public.payout_methods where id = %s", (method,))
        == "pending"
    ), "Stripe's latest word: payouts disabled"
    assert (
        b.scalar(
            "select count(*) from public.withdrawals_to_pay_out() as w "
            "join public.processor_accounts as a on a.id = w.account_id "
            "where a.processor_account_id_lookup = %s",
            (b.lookup_of(account),),
        )
        == 0
    )


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Kitchen\\u0000 cabinets", "Kitchen\ufffd cabinets"),
        ("Kitchen \\ud800 cabinets", "Kitchen \ufffd cabinets"),
    ],
    ids=["nul", "lone surrogate"],
)
def test_an_event_with_text_jsonb_refuses_is_applied_once(stage, text, stored):
    flow = stage.flow()
    intent = flow.charge()
    event = stage.captured("payment_intent.succeeded", intent).event
    # The same event as Stripe would send it had the payer typed that into a free-text field.
    event["id"] = "evt_" + uuid.uuid4().hex
    event["data"]["object"]["description"] = "@@"
    body = (
        json.dumps(event)
        .encode()
        .replace(b'"@@"', json.dumps(text).encode().replace(b"\\\\", b"\\"))
    )
    answers = [post_event(stage.url, body, signature(body, stage.secret)) for _ in range(2)]
    assert [(a.status, a.body["status"]) for a in answers] == [
        (200, "processed"),
        (200, "duplicate"),
    ], [a.body for a in answers]
    assert stage.recorded(event["id"]) == 1
    assert stage.border.payment_status(flow.ids["payment"]) == "funded"
    assert stage.border.scalar(
        "select array[payload -> 'data' -> 'object' ->> 'description', "
        "payload ->> 'payguard_replaced_characters'] from public.webhook_events where id = %s",
        (event["id"],),
    ) == [stored, "1"]
    assert open_reports(stage, event["id"], intent) == []
