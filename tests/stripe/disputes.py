"""Disputes (chargebacks), which localstripe lacks. A test opens one on a succeeded charge
with POST /_test/charges/{id}/dispute (`reason`, default `fraudulent`): event
charge.dispute.created. It closes with POST /_test/disputes/{id}/close (`status=won|lost`, the
bank's decision), or the platform accepts it with POST /v1/disputes/{id}/close (lost):
event charge.dispute.closed. GET /v1/disputes and /v1/disputes/{id} read them."""

from __future__ import annotations

from typing import Any

from connect import emit, listing
from localstripe.errors import UserError
from localstripe.resources import Charge, StripeObject, store
from routes import Router, require

REASONS = {"fraudulent", "duplicate", "product_not_received", "unrecognized", "general"}


class Dispute(StripeObject):
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Charge, reason: str) -> None:
        require(charge.status == "succeeded", "only a succeeded charge can be disputed")
        require(reason in REASONS, f"reason must be one of {', '.join(sorted(REASONS))}")
        super().__init__()
        self.amount = charge.amount
        self.currency = charge.currency
        self.charge = charge.id
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "needs_response"
        self.is_charge_refundable = False
        self.evidence: dict[str, Any] = {}
        self.metadata: dict[str, Any] = {}

    def _close(self, status: str) -> None:
        require(status in ("won", "lost"), "status must be won or lost")
        require(
            self.status in ("needs_response", "under_review", "warning_needs_response"),
            f"the dispute is already {self.status}",
        )
        self.status = status
        emit("charge.dispute.closed", self)


def find_dispute(dispute_id: str) -> Dispute:
    obj = store.get(f"dispute:{dispute_id}")
    if not isinstance(obj, Dispute):
        raise UserError(404, f"No such dispute: '{dispute_id}'", {"code": "resource_missing"})
    return obj


def open_dispute(data: dict[str, Any], account: str | None, id: str) -> Dispute:
    dispute = Dispute(Charge._api_retrieve(id), str(data.get("reason", "fraudulent")))
    emit("charge.dispute.created", dispute)
    return dispute


def decide_dispute(data: dict[str, Any], account: str | None, id: str) -> Dispute:
    dispute = find_dispute(id)
    dispute._close(str(data.get("status")))
    return dispute


def accept_dispute(data: dict[str, Any], account: str | None, id: str) -> Dispute:
    dispute = find_dispute(id)
    dispute._close("lost")
    return dispute


def retrieve_dispute(data: dict[str, Any], account: str | None, id: str) -> Dispute:
    return find_dispute(id)


def list_disputes(data: dict[str, Any], account: str | None) -> Any:
    charge, intent = data.get("charge"), data.get("payment_intent")
    items = [
        v
        for k, v in store.items()
        if k.startswith("dispute:")
        and charge in (None, v.charge)
        and intent in (None, v.payment_intent)
    ]
    return listing("/v1/disputes", items, data)


def register(router: Router) -> None:
    router.add("GET", "/v1/disputes", list_disputes)
    router.add("GET", "/v1/disputes/{id}", retrieve_dispute)
    router.add("POST", "/v1/disputes/{id}/close", accept_dispute)
    router.add("POST", "/_test/charges/{id}/dispute", open_dispute)
    router.add("POST", "/_test/disputes/{id}/close", decide_dispute)
