"""SetupIntents as Stripe confirms them: localstripe makes, confirms and cancels SetupIntents,
but a confirmed one leaves its card attached to no one, and takes a card already attached to
another customer. Here, as on Stripe, a SetupIntent made for a customer that succeeds attaches
its card to that customer, and a card attached to another customer is refused (400
`payment_method_already_attached`, nothing changed). `POST
/_test/setup_intents/{id}/authenticate` completes a 3-D Secure SetupIntent (`requires_action`),
as the cardholder does in Stripe.js."""

from __future__ import annotations

from typing import Any

from localstripe.errors import UserError
from localstripe.resources import PaymentMethod, SetupIntent
from routes import Router, require

_attach_pm = SetupIntent._attach_pm


def _attach_pm_for_customer(self: SetupIntent, pm: PaymentMethod) -> None:
    customer = getattr(self, "customer", None)
    owner = getattr(pm, "customer", None)
    if customer is not None and owner is not None and owner != customer:
        raise UserError(
            400,
            "The payment method you provided has already been attached to a customer.",
            {"code": "payment_method_already_attached"},
        )
    _attach_pm(self, pm)
    _attach_when_succeeded(self)


def _attach_when_succeeded(intent: SetupIntent) -> None:
    if intent.status != "succeeded" or intent.customer is None or intent.payment_method is None:
        return
    pm = PaymentMethod._api_retrieve(intent.payment_method)
    if pm.customer is None:
        PaymentMethod._api_attach(pm.id, customer=intent.customer)


def authenticate(data: dict[str, Any], account: str | None, id: str) -> SetupIntent:
    intent = SetupIntent._api_retrieve(id)
    require(intent.status == "requires_action", f"the SetupIntent is {intent.status}")
    intent.status = "succeeded"
    intent.next_action = None
    _attach_when_succeeded(intent)
    return intent


def register(router: Router) -> None:
    SetupIntent._attach_pm = _attach_pm_for_customer  # type: ignore[method-assign]
    router.add("POST", "/_test/setup_intents/{id}/authenticate", authenticate)
