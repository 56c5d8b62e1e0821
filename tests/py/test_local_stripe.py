"""The local Stripe the border's tests run against: localstripe, and the test extension that
adds what localstripe lacks (tests/stripe/). Each test checks Stripe's behaviour that payguard
relies on, through stripe-python, and the signed webhook events that follow."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe

from payguard.testing.local_stack import http

VISA = "pm_card_visa"
DECLINED_ON_CHARGE = "4000000000000341"
THREE_D_SECURE = "4000002500003155"


def card(client: stripe.StripeClient, number: str) -> str:
    method = client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    return method.id


def customer_with(client: stripe.StripeClient, payment_method: str) -> tuple[str, str]:
    customer = client.v1.customers.create({"email": f"{uuid.uuid4().hex[:8]}@example.test"})
    attached = client.v1.payment_methods.attach(payment_method, {"customer": customer.id})
    return customer.id, attached.id


def pay(
    client: stripe.StripeClient, customer: str, method: str, key: str | None = None, amount=30000
):
    options = {"idempotency_key": key} if key else {}
    return client.v1.payment_intents.create(
        {
            "amount": amount,
            "currency": "usd",
            "customer": customer,
            "payment_method": method,
            "confirm": True,
            "metadata": {"milestone_payment_id": str(uuid.uuid4())},
        },
        options,
    )


def charge_id(intent) -> str:
    latest = intent.latest_charge
    return latest if isinstance(latest, str) else latest.id


def test_a_confirmed_payment_intent_is_signed_and_delivered(stripe_client, webhook_receiver):
    customer, method = customer_with(stripe_client, VISA)
    intent = pay(stripe_client, customer, method)
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 30000, "usd")

    delivery = webhook_receiver.wait_for_event("payment_intent.succeeded", intent.id)
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.signature, webhook_receiver.secret
    )
    assert (
        event.data.object.metadata["milestone_payment_id"]
        == intent.metadata["milestone_payment_id"]
    )
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(delivery.body, delivery.signature, "whsec_another")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(
            delivery.body.replace(b"30000", b"30001"), delivery.signature, webhook_receiver.secret
        )


def test_an_idempotency_key_replays_the_first_answer_and_refuses_other_parameters(
    stripe_client,
):
    customer, method = customer_with(stripe_client, VISA)
    key = f"milestone_payment:{uuid.uuid4()}:attempt:1"
    first = stripe_client.v1.payment_intents.create(
        {
            "amount": 500,
            "currency": "usd",
            "customer": customer,
            "payment_method": method,
            "confirm": True,
        },
        {"idempotency_key": key},
    )
    again = stripe_client.v1.payment_intents.create(
        {
            "amount": 500,
            "currency": "usd",
            "customer": customer,
            "payment_method": method,
            "confirm": True,
        },
        {"idempotency_key": key},
    )
    assert again.id == first.id
    charges = [
        c
        for c in stripe_client.v1.charges.list({"limit": 100}).auto_paging_iter()
        if c.payment_intent == first.id
    ]
    assert len(charges) == 1, "a retried request charged twice"
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.payment_intents.create(
            {
                "amount": 501,
                "currency": "usd",
                "customer": customer,
                "payment_method": method,
                "confirm": True,
            },
            {"idempotency_key": key},
        )


def test_a_declined_card_answers_402_and_reports_the_failure(stripe_client, webhook_receiver):
    customer, method = customer_with(stripe_client, card(stripe_client, DECLINED_ON_CHARGE))
    with pytest.raises(stripe.CardError) as declined:
        pay(stripe_client, customer, method)
    assert declined.value.http_status == 402
    assert declined.value.code == "card_declined"
    event = webhook_receiver.wait_for(
        lambda e: (
            e["type"] == "payment_intent.payment_failed"
            and e["data"]["object"]["customer"] == customer
        )
    ).event
    assert event["data"]["object"]["last_payment_error"]["code"] == "card_declined"


def test_a_card_that_needs_3d_secure_charges_nothing_until_authenticated(stripe_client):
    customer, method = customer_with(stripe_client, card(stripe_client, THREE_D_SECURE))
    intent = pay(stripe_client, customer, method)
    assert intent.status == "requires_action"
    assert intent.next_action["type"] == "use_stripe_sdk"
    assert intent.latest_charge is None


def test_a_refund_and_a_cancel_send_their_events(stripe_client, webhook_receiver):
    customer, method = customer_with(stripe_client, VISA)
    intent = pay(stripe_client, customer, method)
    stripe_client.v1.refunds.create({"payment_intent": intent.id})
    refunded = webhook_receiver.wait_for_event("charge.refunded", charge_id(intent)).event
    assert refunded["data"]["object"]["amount_refunded"] == 30000
    assert refunded["data"]["object"]["refunded"] is True

    pending = stripe_client.v1.payment_intents.create(
        {"amount": 700, "currency": "usd", "customer": customer, "payment_method": method}
    )
    stripe_client.v1.payment_intents.cancel(pending.id)
    canceled = webhook_receiver.wait_for_event("payment_intent.canceled", pending.id).event
    assert canceled["data"]["object"]["status"] == "canceled"


def test_a_dispute_opens_and_closes_with_its_events(
    stripe_client, stripe_test_api, webhook_receiver
):
    customer, method = customer_with(stripe_client, VISA)
    intent = pay(stripe_client, customer, method)
    dispute = stripe_test_api.dispute(charge_id(intent))
    created = webhook_receiver.wait_for_event("charge.dispute.created", dispute["id"]).event
    assert created["data"]["object"]["payment_intent"] == intent.id
    assert (created["data"]["object"]["amount"], created["data"]["object"]["status"]) == (
        30000,
        "needs_response",
    )
    stripe_test_api.decide_dispute(dispute["id"], "lost")
    closed = webhook_receiver.wait_for_event("charge.dispute.closed", dispute["id"]).event
    assert closed["data"]["object"]["status"] == "lost"
    with pytest.raises(AssertionError, match="already lost"):
        stripe_test_api.decide_dispute(dispute["id"], "won")


def test_connect_transfer_then_payout_on_the_connected_account(
    stripe_client, stripe_test_api, webhook_receiver
):
    account = stripe_client.v1.accounts.create({"type": "custom", "country": "US"})
    on_account = {"stripe_account": account.id}
    with pytest.raises(stripe.InvalidRequestError, match="not enabled"):
        stripe_client.v1.payouts.create({"amount": 100, "currency": "usd"}, on_account)

    stripe_test_api.verify_account(account.id)
    updated = webhook_receiver.wait_for(
        lambda e: e["type"] == "account.updated" and e.get("account") == account.id
    ).event
    assert updated["data"]["object"]["payouts_enabled"] is True

    transfer = stripe_client.v1.transfers.create(
        {"amount": 25000, "currency": "usd", "destination": account.id},
        {"idempotency_key": f"withdrawal:{uuid.uuid4()}:transfer"},
    )
    assert (transfer.destination, transfer.amount) == (account.id, 25000)
    with pytest.raises(stripe.InvalidRequestError, match="insufficient funds"):
        stripe_client.v1.payouts.create({"amount": 25001, "currency": "usd"}, on_account)

    payout = stripe_client.v1.payouts.create({"amount": 25000, "currency": "usd"}, on_account)
    assert (payout.object, payout.status) == ("payout", "pending")
    assert [p.id for p in stripe_client.v1.payouts.list(options=on_account).data] == [payout.id]
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payouts.retrieve(payout.id)  # not on the platform's account

    stripe_test_api.settle_payout(payout.id, "paid")
    paid = webhook_receiver.wait_for_event("payout.paid", payout.id)
    event = stripe.Webhook.construct_event(paid.body, paid.signature, webhook_receiver.secret)
    assert event.account == account.id
    assert stripe_client.v1.payouts.retrieve(payout.id, options=on_account).status == "paid"


def test_a_failed_payout_returns_the_money_to_the_connected_balance(
    stripe_client, stripe_test_api, webhook_receiver
):
    account = stripe_client.v1.accounts.create({"type": "custom"})
    stripe_test_api.verify_account(account.id)
    on_account = {"stripe_account": account.id}
    stripe_client.v1.transfers.create({"amount": 900, "currency": "usd", "destination": account.id})
    payout = stripe_client.v1.payouts.create({"amount": 900, "currency": "usd"}, on_account)
    assert stripe_client.v1.balance.retrieve(options=on_account).available[0].amount == 0

    stripe_test_api.settle_payout(payout.id, "fail", failure_code="account_closed")
    failed = webhook_receiver.wait_for_event("payout.failed", payout.id).event
    assert failed["account"] == account.id
    assert failed["data"]["object"]["failure_code"] == "account_closed"
    assert stripe_client.v1.balance.retrieve(options=on_account).available[0].amount == 900
    with pytest.raises(AssertionError, match="already failed"):
        stripe_test_api.settle_payout(payout.id, "paid")


def test_an_unauthenticated_request_is_refused(local_stripe):
    base = local_stripe.status().api_base
    assert http("GET", f"{base}/v1/accounts").status == 401
    assert http("GET", f"{base}/v1/accounts", token="sk_test_any").status == 200


def test_a_failed_delivery_is_retried_each_attempt_signed_afresh(
    stripe_client, stripe_test_api, webhook_receiver
):
    before = stripe_test_api.configure_delivery(retries=2, retry_delay=1.1)
    try:
        # Only this customer's event fails once: a late webhook of an earlier test is answered 200.
        webhook_receiver.fail_first(
            lambda e: (
                e["type"] == "customer.created"
                and e["data"]["object"]["email"] == "retry@example.test"
            )
        )
        customer = stripe_client.v1.customers.create({"email": "retry@example.test"})
        first = webhook_receiver.wait_for_event("customer.created", customer.id)
        webhook_receiver.seen.clear()
        second = webhook_receiver.wait_for_event("customer.created", customer.id)
    finally:
        stripe_test_api.configure_delivery(**{k: before[k] for k in ("retries", "retry_delay")})
    assert first.body == second.body
    assert first.signature != second.signature, "a retry is signed with its own time"
    for attempt in (first, second):
        stripe.Webhook.construct_event(attempt.body, attempt.signature, webhook_receiver.secret)


def test_an_event_is_delivered_again_on_request(stripe_client, stripe_test_api, webhook_receiver):
    customer = stripe_client.v1.customers.create({"email": "again@example.test"})
    first = webhook_receiver.wait_for_event("customer.created", customer.id)
    stripe_test_api.deliver_again(first.event["id"])
    webhook_receiver.seen.clear()
    again = webhook_receiver.wait_for_event("customer.created", customer.id)
    assert again.event["id"] == first.event["id"]
    stripe.Webhook.construct_event(again.body, again.signature, webhook_receiver.secret)


def test_delivery_settings_are_checked(stripe_test_api):
    answer = http("POST", stripe_test_api.api_base + "/_config/delivery", {"retries": -1})
    assert answer.status == 400
    assert "at least 0" in answer.body["error"]["message"]


def test_concurrent_requests_with_one_idempotency_key_charge_once(stripe_client):
    customer, method = customer_with(stripe_client, VISA)
    key = f"milestone_payment:{uuid.uuid4()}:attempt:1"
    params = {
        "amount": 800,
        "currency": "usd",
        "customer": customer,
        "payment_method": method,
        "confirm": True,
    }

    def create(_: int) -> str:
        return stripe_client.v1.payment_intents.create(params, {"idempotency_key": key}).id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(create, range(8)))
    assert len(ids) == 1
    charges = [
        c
        for c in stripe_client.v1.charges.list({"limit": 100}).auto_paging_iter()
        if c.payment_intent in ids
    ]
    assert len(charges) == 1
