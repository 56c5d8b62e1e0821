"""Webhook delivery, as localstripe does it (each event signed with every webhook's secret and
POSTed to its URL) but tunable for tests, and closer to Stripe: each attempt is signed with the
time it is sent, a delivery that fails (no answer, or a status other than 2xx) is retried, and
an event already sent can be sent again.

POST /_config/delivery sets `delay` (seconds between the call and the first attempt; 1 as in
localstripe), `retries` (attempts after a failed one; 0 as in localstripe) and `retry_delay`
(seconds between attempts). POST /_test/events/{id}/deliver sends an event again, as Stripe's
"resend" does (same event, new signature).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import aiohttp
from localstripe import webhooks
from localstripe.resources import Event
from localstripe.webhooks import _webhooks, schedule_webhook
from routes import Router, require

settings: dict[str, float] = {"delay": 1.0, "retries": 0, "retry_delay": 1.0}
log = logging.getLogger("aiohttp.access")
_running: set[asyncio.Future[None]] = set()


def signature_header(secret: str, payload: bytes, timestamp: int) -> str:
    signed = hmac.new(secret.encode(), b"%d." % timestamp + payload, hashlib.sha256)
    return f"t={timestamp},v1={signed.hexdigest()}"


async def deliver(name: str, url: str, secret: str, type_: str, payload: bytes) -> None:
    attempts = 1 + int(settings["retries"])
    for attempt in range(1, attempts + 1):
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(secret, payload, int(time.time())),
        }
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, data=payload, headers=headers) as answer,
            ):
                if 200 <= answer.status < 300:
                    log.info('webhook "%s" delivered to %s', type_, name)
                    return
                log.info('webhook "%s" to %s: status %d', type_, name, answer.status)
        except aiohttp.ClientError as exc:
            log.info('webhook "%s" to %s failed: %s', type_, name, exc)
        if attempt < attempts:
            await asyncio.sleep(settings["retry_delay"])


async def send(event: Event) -> None:
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode()
    await asyncio.sleep(settings["delay"])
    for name, webhook in list(_webhooks.items()):
        if webhook.events is not None and event.type not in webhook.events:
            continue
        task = asyncio.ensure_future(
            deliver(name, webhook.url, webhook.secret, event.type, payload)
        )
        _running.add(task)  # held until done, so that it is not collected midway
        task.add_done_callback(_running.discard)


def configure(data: dict[str, Any], account: str | None) -> dict[str, float]:
    for key in ("delay", "retries", "retry_delay"):
        if key in data:
            try:
                value = float(data[key])
            except (TypeError, ValueError):
                value = -1.0
            require(value >= 0, f"{key} must be a number of at least 0")
            settings[key] = value
    return dict(settings)


def deliver_again(data: dict[str, Any], account: str | None, id: str) -> Event:
    event = Event._api_retrieve(id)
    schedule_webhook(event)
    return event


def register(router: Router) -> None:
    webhooks._send_webhook = send  # schedule_webhook looks it up at each call
    router.add("POST", "/_config/delivery", configure)
    router.add("POST", "/_test/events/{id}/deliver", deliver_again)
