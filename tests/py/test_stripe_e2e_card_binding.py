"""A saved card is the card its owner entered: `payment-methods` saves only the card of a
SetupIntent it made for the caller's customer, confirmed with a card tokenised for it. A card
someone else tokenised (its `pm_…` id leaked) is never saved for another user and never
charged for their payments, whether named bare or confirmed into the attacker's own
SetupIntent; the owner's own card, saved the same way, funds their payment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from payguard.testing.local_stack import FunctionsClient
from payguard.testing.stripe_flow import VISA, Border, Flow


@pytest.fixture(scope="module")
def border(serve_functions, database, database_url, cluster, stripe_test_api) -> Iterator[Border]:
    functions = serve_functions(database)
    border = Border(
        database_url,
        cluster.socket_url("authenticator", database),
        FunctionsClient(functions),
        stripe_test_api,
    )
    with border:
        border.lift_holds()
        yield border


def saved_methods(border: Border, user: Any) -> int:
    return int(
        border.scalar("select count(*) from public.payment_methods where user_id = %s", (user,))
    )


def test_a_card_someone_else_tokenised_is_never_the_callers(border, stripe_client):
    victim_card = stripe_client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
            "billing_details": {"name": "Victim Person"},
        }
    )
    attacker = Flow(border)
    attacker.parties()
    homeowner = attacker.ids["homeowner"]

    bare = border.functions.call(
        "payment-methods", {"payment_method": victim_card.id}, user=homeowner, aal="aal2"
    )
    assert (bare.status, bare.body["code"]) == (422, "setup_intent_required"), bare.body

    # Stripe's clock counts seconds: the attacker's SetupIntent is made after the card was.
    time.sleep(1.05 - time.time() % 1)
    setup = border.functions.call("payment-methods", {}, user=homeowner, aal="aal2")
    assert setup.status == 200, setup.body
    stripe_client.v1.setup_intents.confirm(
        setup.body["setup_intent_id"], {"payment_method": victim_card.id}
    )
    named = border.functions.call(
        "payment-methods",
        {"setup_intent": setup.body["setup_intent_id"]},
        user=homeowner,
        aal="aal2",
    )
    assert named.status == 403, named.body
    assert saved_methods(border, homeowner) == 0

    # The attacker's own card, entered into a SetupIntent, is saved and funds their payment.
    attacker.save_card()
    attacker.create_payment()
    intent = stripe_client.v1.payment_intents.retrieve(attacker.charge())
    assert intent.payment_method == attacker.ids["card"] != victim_card.id
    assert saved_methods(border, homeowner) == 1
