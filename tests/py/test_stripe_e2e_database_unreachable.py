"""The database unreachable at the border with Stripe, end to end, with real network faults:
the functions reach PostgreSQL through a TCP proxy that the tests cut (open connections ended,
new ones refused) and restore, and Stripe through an HTTP proxy that cuts the database exactly
when Stripe's answer creating a PaymentIntent passes, before the function reads it.

Stripe charged and the database is gone: the payer is told 503, with the PaymentIntent and
"do not pay again"; Stripe holds one charge; nothing is funded; `reconcile --stripe` reports the
charge once the database is back; Stripe's redelivery of `payment_intent.succeeded` funds it
once, and a retried request charges nothing more (the same idempotency key before the webhook,
a refusal after it). A webhook arriving while the database is down, or losing it in the middle
of its transaction, is answered 5xx, so that Stripe delivers it again, and leaves nothing half
recorded; the next delivery applies it once. Stripe's webhooks are held back in a sink and
passed on to the served `stripe-webhook` by each test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from payguard.cluster import Cluster
from payguard.reconcile import reconcile
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.local_stack import FunctionsClient, Response
from payguard.testing.network_faults import HttpTap, TcpProxy, http_tap, tcp_proxy
from payguard.testing.stripe_flow import Border, Flow, Stage, held_webhooks, post_event, wait_until


@dataclass
class Faults:
    stage: Stage
    database: TcpProxy
    stripe: HttpTap


@pytest.fixture(scope="module")
def faults(
    serve_functions,
    database,
    database_url,
    admin_url,
    cluster: Cluster,
    local_stripe,
    stripe_test_api,
) -> Iterator[Faults]:
    """The functions served with their database behind a TCP proxy and their Stripe behind
    an HTTP tap; webhooks held in a sink."""
    port = cluster.port()
    api_base = local_stripe.status().api_base
    assert port is not None
    assert api_base is not None
    with tcp_proxy(("127.0.0.1", port)) as proxy, http_tap(api_base) as tap:
        proxied_url = cluster.url(database).replace(
            f"127.0.0.1:{port}/", f"127.0.0.1:{proxy.port}/"
        )
        assert proxied_url != cluster.url(database)
        functions = serve_functions(
            database,
            extra_env={"SUPABASE_DB_URL": proxied_url, "STRIPE_API_BASE": tap.url},
        )
        border = Border(
            database_url,
            cluster.socket_url("authenticator", database),
            FunctionsClient(functions),
            stripe_test_api,
        )
        with border:
            border.lift_holds()
            with held_webhooks(border, local_stripe, functions, admin_url) as stage:
                yield Faults(stage, proxy, tap)


@pytest.fixture
def reachable(faults: Faults) -> Iterator[Faults]:
    """Each test starts, and ends, with the database reachable."""
    faults.database.restore()
    yield faults
    faults.database.restore()


def fund_request(flow: Flow) -> Response:
    return flow.border.functions.call(
        "milestone-payments",
        {
            "milestone_payment_id": str(flow.ids["payment"]),
            "payment_method_id": str(flow.ids["payment_method"]),
        },
        user=flow.ids["homeowner"],
        aal="aal2",
    )


def intents_naming(stripe_client, payment: uuid.UUID) -> list[Any]:
    """Stripe's PaymentIntents whose metadata names the payment."""
    listed = stripe_client.v1.payment_intents.list({"limit": 100})
    return [
        i
        for i in listed.auto_paging_iter()
        if i.metadata is not None
        and i.metadata.to_dict().get("milestone_payment_id") == str(payment)
    ]


def succeeded_charges(stripe_client, intent: str) -> list[str]:
    """Stripe's succeeded charges of the PaymentIntent."""
    listed = stripe_client.v1.charges.list({"limit": 100})
    return [
        c.id
        for c in listed.auto_paging_iter()
        if c.payment_intent == intent and c.status == "succeeded"
    ]


def mentioning(found: list[Any], text: str) -> list[str]:
    return [d.check for d in found if text in d.subject]


def charged_while_the_database_is_cut(faults: Faults, stripe_client) -> tuple[Flow, str]:
    """A payer's request whose PaymentIntent Stripe creates and charges, the database cut the
    moment Stripe's answer passes: checks the answer and both sides; returns the flow and the
    intent, the database still cut."""
    stage = faults.stage
    flow = stage.flow()
    payment = flow.ids["payment"]
    faults.stripe.after("POST", "/v1/payment_intents", faults.database.cut)
    answer = fund_request(flow)
    assert faults.stripe.fired, "Stripe's answer passed the tap"
    assert faults.database.is_cut
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "database_unavailable", answer.body
    assert "Do not pay again" in answer.body["message"], answer.body
    intent = answer.body["payment_intent_id"]
    assert answer.body["milestone_payment_id"] == str(payment)
    assert answer.body["payment_intent_status"] == "succeeded"
    # Stripe: exactly one intent for the payment, one succeeded charge.
    assert [i.id for i in intents_naming(stripe_client, payment)] == [intent]
    assert len(succeeded_charges(stripe_client, intent)) == 1
    # Stripe's webhook arrives while the database is still down: 5xx, so Stripe retries.
    delivery = stage.captured("payment_intent.succeeded", intent)
    down = post_event(stage.url, delivery.body, delivery.signature)
    assert down.status == 503, down.body
    assert down.body["code"] == "database_unavailable", down.body
    return flow, intent


def assert_reported_not_funded(stage: Stage, flow: Flow, intent: str, stripe_client) -> None:
    """The database back: nothing funded, nothing recorded half, the charge reported."""
    payment = flow.ids["payment"]
    assert stage.border.payment_status(payment) == "pending"
    assert stage.fundings(payment) == 0
    event = stage.captured("payment_intent.succeeded", intent).event["id"]
    assert stage.recorded(event) == 0, "the webhook left nothing behind"
    [charge] = succeeded_charges(stripe_client, intent)
    assert mentioning(reconcile_stripe(stage.admin_url, stripe_client), charge) == [
        "charge with no funded payment"
    ]
    stage.assert_ledger_reconciles()


def assert_settled(stage: Stage, flow: Flow, intent: str, stripe_client) -> None:
    payment = flow.ids["payment"]
    assert stage.border.payment_status(payment) == "funded"
    assert stage.fundings(payment) == 1
    assert stage.border.escrow_balance(flow.ids["escrow"]) == flow.amount
    assert [i.id for i in intents_naming(stripe_client, payment)] == [intent], "charged once"
    assert len(succeeded_charges(stripe_client, intent)) == 1
    stage.assert_ledger_reconciles()
    found = reconcile_stripe(stage.admin_url, stripe_client)
    assert mentioning(found, intent) == [], found
    assert mentioning(found, str(payment)) == [], found
    [charge] = succeeded_charges(stripe_client, intent)
    assert mentioning(found, charge) == [], found
    assert mentioning(reconcile(stage.admin_url), intent) == []


def test_charged_then_database_unreachable_the_webhook_funds_it_once_and_a_retry_is_refused(
    reachable, stripe_client, stripe_test_api
):
    stage = reachable.stage
    flow, intent = charged_while_the_database_is_cut(reachable, stripe_client)

    reachable.database.restore()
    assert_reported_not_funded(stage, flow, intent, stripe_client)

    # Stripe delivers the event again (as its retries do): funded, once.
    event = stage.captured("payment_intent.succeeded", intent).event["id"]
    stripe_test_api.deliver_again(event)
    assert stage.deliver(stage.next_delivery(event))["status"] == "processed"
    assert stage.recorded(event) == 1
    # Another delivery changes nothing.
    again = stage.deliver(stage.captured("payment_intent.succeeded", intent))
    assert again["status"] == "duplicate", again

    # The payer, told the request failed, tries again: refused, nothing charged.
    retry = fund_request(flow)
    assert (retry.status, retry.body["code"]) == (409, "PT409"), retry.body
    assert_settled(stage, flow, intent, stripe_client)


def test_charged_then_database_unreachable_a_retry_before_the_webhook_charges_nothing_more(
    reachable, stripe_client, stripe_test_api
):
    stage = reachable.stage
    flow, intent = charged_while_the_database_is_cut(reachable, stripe_client)

    reachable.database.restore()
    assert_reported_not_funded(stage, flow, intent, stripe_client)

    # The payer retries before Stripe's webhook came through: the same attempt, the same
    # idempotency key, so Stripe answers with the same PaymentIntent; now it is recorded.
    retry = fund_request(flow)
    assert retry.status == 202, retry.body
    assert (retry.body["payment_intent_id"], retry.body["attempt"]) == (intent, 1), retry.body
    assert [i.id for i in intents_naming(stripe_client, flow.ids["payment"])] == [intent]
    assert (
        stage.border.scalar(
            "select processor_payment_intent_id from public.funding_attempts "
            "where milestone_payment_id = %s and attempt = 1",
            (flow.ids["payment"],),
        )
        == intent
    )
    assert stage.border.payment_status(flow.ids["payment"]) == "pending", "only the webhook funds"

    event = stage.captured("payment_intent.succeeded", intent).event["id"]
    stripe_test_api.deliver_again(event)
    assert stage.deliver(stage.next_delivery(event))["status"] == "processed"
    assert_settled(stage, flow, intent, stripe_client)


def statement(text: bytes) -> Callable[[bytes], bool]:
    """A match for the chunk that carries `text` (a statement the function sends)."""
    return lambda chunk: text in chunk


def after_apply_then(text: bytes) -> Callable[[bytes], bool]:
    """A match for the first chunk carrying `text` once apply_stripe_event was sent."""
    seen = {"apply": False}

    def match(chunk: bytes) -> bool:
        if b"apply_stripe_event" in chunk:
            seen["apply"] = True
            return False
        return seen["apply"] and text in chunk

    return match


@pytest.mark.parametrize(
    ("cut_at", "committed"),
    [
        pytest.param(statement(b"apply_stripe_event"), False, id="before-commit"),
        pytest.param(after_apply_then(b"commit"), True, id="after-commit"),
    ],
)
def test_a_webhook_losing_the_database_mid_transaction_is_answered_5xx_and_applied_once(
    reachable, stripe_client, stripe_test_api, cut_at, committed
):
    stage = reachable.stage
    flow = stage.flow()
    payment = flow.ids["payment"]
    intent = flow.charge()
    delivery = stage.captured("payment_intent.succeeded", intent)
    event = delivery.event["id"]

    # The connection breaks right after the event's statement (it runs, and is rolled back
    # with its transaction) or right after its COMMIT (it is committed, the answer lost).
    reachable.database.cut_when(cut_at)
    lost = post_event(stage.url, delivery.body, delivery.signature)
    assert reachable.database.is_cut, "the cut happened inside the webhook's transaction"
    assert lost.status == 503, lost.body
    assert lost.body["code"] == "database_unavailable", lost.body
    reachable.database.restore()

    if committed:
        assert stage.recorded(event) == 1
        assert stage.border.event_status("payment_intent.succeeded", intent) == "processed"
        assert stage.fundings(payment) == 1
    else:
        assert stage.recorded(event) == 0, "nothing recorded half"
        assert stage.border.payment_status(payment) == "pending"
        assert stage.fundings(payment) == 0
        assert not stage.open_inconsistencies(intent)

    # Stripe delivers it again: applied once in all.
    stripe_test_api.deliver_again(event)
    answer = stage.deliver(stage.next_delivery(event))
    assert answer["status"] == ("duplicate" if committed else "processed"), answer
    assert stage.recorded(event) == 1
    wait_until(lambda: stage.border.payment_status(payment), lambda s: s == "funded", "funded")
    assert_settled(stage, flow, intent, stripe_client)
