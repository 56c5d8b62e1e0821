"""A TEST EXTENSION of localstripe, for payguard's tests and local development only: it plays
the parts of Stripe that payguard uses and localstripe lacks. It is never part of the product;
real Stripe, or plain localstripe, needs none of it.

Loaded by `payguard stripe start --extension tests/stripe/extension.py` (localstripe's server
runs `install(app)` before it serves). It adds:
- connect.py: connected accounts and their onboarding links (Account Links), transfers and
  their reversals, payouts on a connected account (`Stripe-Account`), their events
  (account.updated, transfer.created, transfer.reversed, payout.created/paid/failed);
- disputes.py: disputes on charges (charge.dispute.created/closed);
- setup_intents.py: a SetupIntent that succeeds attaches its card to its customer, and refuses
  a card attached to another (as Stripe does);
- delivery.py: webhook delivery signed at each attempt, with a tunable delay, retries of a
  failed delivery, and an event sent again on request;
- here: the events localstripe leaves out (charge.refunded after a refund,
  payment_intent.canceled after a cancel), `Idempotency-Key` on POST requests (the same key
  and parameters replay the first answer, other parameters are refused, as on Stripe; kept
  in memory, forgotten with the objects by DELETE /_config/data, or alone by
  DELETE /_test/idempotency_keys, which plays the 24 hours after which Stripe forgets them), and
  DELETE /_config/webhooks/{name} to stop delivering to a webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import connect
import delivery
import disputes
import setup_intents
from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import Charge, PaymentIntent
from localstripe.webhooks import _webhooks
from routes import Router

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Idempotency-Key → (fingerprint of the request, status, body, content type); in memory.
_answers: dict[tuple[str, str, str], tuple[str, int, bytes, str]] = {}
_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
NOT_KEPT = {401, 429}


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "DELETE" and request.path == "/_config/data":
        _answers.clear()  # the objects they name are forgotten too
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    scope = (
        request.headers.get("Authorization", ""),
        request.headers.get("Stripe-Account", ""),
        key,
    )
    body = await request.read()
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.path_qs.encode() + b"\n" + body
    ).hexdigest()
    async with _locks.setdefault(scope, asyncio.Lock()):
        kept = _answers.get(scope)
        if kept is not None:
            if kept[0] != fingerprint:
                return web.json_response(
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Keys for idempotent requests can only be used with "
                            "the same parameters they were first used with.",
                        }
                    },
                    status=400,
                )
            return web.Response(
                body=kept[2],
                status=kept[1],
                content_type=kept[3],
                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
            )
        try:
            response = await handler(request)
        except UserError as exc:
            response = exc.to_response()
        if (
            isinstance(response, web.Response)
            and response.status not in NOT_KEPT
            and (response.status < 500)
        ):
            payload = response.body if isinstance(response.body, bytes) else b""
            _answers[scope] = (fingerprint, response.status, payload, response.content_type)
        response.headers["Idempotency-Key"] = key
        return response


@web.middleware
async def missing_events(request: web.Request, handler: Handler) -> web.StreamResponse:
    """charge.refunded after a refund, payment_intent.canceled after a cancel."""
    response = await handler(request)
    if request.method != "POST" or response.status != 200:
        return response
    if request.path == "/v1/refunds":
        assert isinstance(response, web.Response)
        assert isinstance(response.body, bytes)
        refund = json.loads(response.body)
        connect.emit("charge.refunded", Charge._api_retrieve(refund["charge"]))
    elif re.fullmatch(r"/v1/payment_intents/[^/]+/cancel", request.path):
        intent_id = request.path.split("/")[3]
        connect.emit("payment_intent.canceled", PaymentIntent._api_retrieve(intent_id))
    return response


def forget_webhook(data: dict[str, Any], account: str | None, id: str) -> web.Response:
    _webhooks.pop(id, None)
    return web.Response()


def forget_idempotency_keys(data: dict[str, Any], account: str | None) -> web.Response:
    """Forget every kept answer, as Stripe does 24 hours after a key's first use."""
    _answers.clear()
    return web.Response()


def install(app: web.Application) -> None:
    router = Router()
    connect.register(router)
    disputes.register(router)
    setup_intents.register(router)
    delivery.register(router)
    router.add("DELETE", "/_config/webhooks/{id}", forget_webhook)
    router.add("DELETE", "/_test/idempotency_keys", forget_idempotency_keys)
    app.middlewares.append(idempotency)
    app.middlewares.append(missing_events)
    app.middlewares.append(router.middleware)
