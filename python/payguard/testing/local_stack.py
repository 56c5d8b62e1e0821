"""pytest fixtures for the border with Stripe: a local Stripe (localstripe with the test
extension, started once per session), a receiver for its webhooks, the Edge Functions served
by Deno against a test database, and signed user tokens to call them with.
Load with `pytest_plugins`."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import stripe

from payguard.cluster import Cluster
from payguard.functions import Functions, StripeSettings, supabase_environment
from payguard.jwt import sign
from payguard.local_stripe import API_KEY, TEST_EXTENSION, LocalStripe, configure_webhook
from payguard.project import Project
from payguard.testing.request import user_claims

DELIVERY_TIMEOUT = 15.0
# Seconds between an API call and its webhook in tests (localstripe waits one second).
TEST_DELIVERY_DELAY = 0.1


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str]


def http(
    method: str,
    url: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP request with a JSON body (or raw bytes); the answer's JSON body when it has
    one, else its text. An error status is an answer, not an exception."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=sent, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status, raw, got = answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as failed:
        status, raw, got = failed.code, failed.read(), dict(failed.headers)
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Response(status, parsed, got)


def user_token(user_id: uuid.UUID | str, *, aal: str = "aal1", **overrides: Any) -> str:
    """A user's access token as Supabase Auth issues it, signed with the local JWT secret;
    `overrides` replace claims (exp=..., aud=...)."""
    return sign({**user_claims(user_id, aal=aal), **overrides})


@dataclass(frozen=True)
class FunctionsClient:
    """Requests to served functions, as an app would make them: a user's signed token, or
    none (`user=None`), or a given one (`token=`)."""

    functions: Functions

    def call(
        self,
        name: str,
        body: Any = None,
        *,
        user: uuid.UUID | str | None = None,
        aal: str = "aal1",
        token: str | None = None,
        method: str = "POST",
        path: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        url = self.functions.status().get(name)
        assert url is not None, f"the function {name} is not served"
        if token is None and user is not None:
            token = user_token(user, aal=aal)
        return http(method, url + path, body, token=token, headers=headers)


@dataclass
class StripeTestApi:
    """The local Stripe, and the test extension's triggers (what a bank or Stripe's own
    review would do): settle a payout, verify an account, open or decide a dispute."""

    local: LocalStripe
    client: stripe.StripeClient

    @property
    def api_base(self) -> str:
        base = self.local.status().api_base
        assert base is not None, "localstripe does not run"
        return base

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        answer = http(method, self.api_base + path, dict(body or {}), token=API_KEY)
        assert answer.status == 200, f"{method} {path}: {answer.status} {answer.body}"
        return answer.body

    def verify_account(self, account_id: str, outcome: str = "verified") -> Any:
        return self.call("POST", f"/_test/accounts/{account_id}/verify", {"outcome": outcome})

    def add_external_account(self, account_id: str, currency: str = "usd") -> str:
        """A bank account added to a connected account, as its owner adds it during Stripe's
        hosted onboarding; its ba_ id."""
        made = self.call(
            "POST",
            f"/_test/accounts/{account_id}/external_accounts",
            {"currency": currency.lower()},
        )
        return str(made["id"])

    def settle_payout(self, payout_id: str, outcome: str = "paid", **body: Any) -> Any:
        return self.call("POST", f"/_test/payouts/{payout_id}/{outcome}", body)

    def dispute(self, charge_id: str, reason: str = "fraudulent") -> Any:
        return self.call("POST", f"/_test/charges/{charge_id}/dispute", {"reason": reason})

    def decide_dispute(self, dispute_id: str, status: str) -> Any:
        return self.call("POST", f"/_test/disputes/{dispute_id}/close", {"status": status})

    def configure_delivery(self, **settings: float) -> dict[str, float]:
        """Webhook delivery: `delay` before the first attempt, `retries` after a failed one,
        `retry_delay` between attempts (seconds); returns the settings now in force."""
        answer = http("POST", self.api_base + "/_config/delivery", dict(settings))
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def deliver_again(self, event_id: str) -> Any:
        """Send an event again, as Stripe's "resend" does (same event, a new signature)."""
        return self.call("POST", f"/_test/events/{event_id}/deliver")

    def forget_everything(self) -> None:
        """Delete every object (localstripe's DELETE /_config/data); webhooks stay."""
        self.call("DELETE", "/_config/data")


@dataclass
class Delivery:
    signature: str
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


@dataclass
class WebhookReceiver:
    """An HTTP endpoint that records what the local Stripe delivers to it."""

    url: str
    secret: str
    answer_status: int = 200
    # This many deliveries of the events `failing` matches are answered 500 first (they are
    # recorded all the same). Set both with fail_first(); any other event is answered as usual,
    # so that a late webhook of an earlier test cannot take a failure meant for this one.
    failures_left: int = 0
    failing: Callable[[dict[str, Any]], bool] = field(default=lambda event: False)
    deliveries: queue.Queue[Delivery] = field(default_factory=queue.Queue)
    seen: list[Delivery] = field(default_factory=list)

    def fail_first(self, match: Callable[[dict[str, Any]], bool], times: int = 1) -> None:
        """Answer 500 to the next `times` deliveries of events that `match` accepts."""
        self.failing = match
        self.failures_left = times

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = DELIVERY_TIMEOUT
    ) -> Delivery:
        """The first delivery (seen before or arriving within `timeout`) whose event matches."""
        for delivery in self.seen:
            if match(delivery.event):
                return delivery
        while True:
            try:
                delivery = self.deliveries.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no matching event delivered within {timeout} s; got "
                    f"{[d.event['type'] for d in self.seen]}"
                ) from None
            self.seen.append(delivery)
            if match(delivery.event):
                return delivery

    def wait_for_event(
        self, type_: str, object_id: str, timeout: float = DELIVERY_TIMEOUT
    ) -> Delivery:
        return self.wait_for(
            lambda e: e["type"] == type_ and e["data"]["object"]["id"] == object_id, timeout
        )


@pytest.fixture(scope="session")
def local_stripe(
    project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStripe]:
    """localstripe with the test extension, for the whole session, its state in a temporary
    folder (a developer's own local Stripe is left alone); objects in memory only; webhooks
    sent TEST_DELIVERY_DELAY after the call, once (stripe_test_api.configure_delivery)."""
    local = LocalStripe(tmp_path_factory.mktemp("localstripe"))
    local.start(extension=project.root / TEST_EXTENSION, persist=False)
    base = local.status().api_base
    assert base is not None
    answer = http("POST", f"{base}/_config/delivery", {"delay": TEST_DELIVERY_DELAY})
    assert answer.status == 200, answer.body
    yield local
    local.stop()


@pytest.fixture(scope="session")
def stripe_client(local_stripe: LocalStripe) -> stripe.StripeClient:
    """stripe-python pointed at the local Stripe."""
    return local_stripe.client()


@pytest.fixture(scope="session")
def stripe_test_api(local_stripe: LocalStripe, stripe_client: stripe.StripeClient) -> StripeTestApi:
    return StripeTestApi(local_stripe, stripe_client)


@contextlib.contextmanager
def receiver_server() -> Iterator[WebhookReceiver]:
    """An HTTP endpoint on 127.0.0.1 that records every POST made to it (its secret is for the
    webhook it may be registered as)."""
    receiver: WebhookReceiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            delivery = Delivery(self.headers.get("Stripe-Signature", ""), body)
            receiver.deliveries.put(delivery)
            status = receiver.answer_status
            if receiver.failures_left > 0 and receiver.failing(delivery.event):
                receiver.failures_left -= 1
                status = 500
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    receiver = WebhookReceiver(
        url=f"http://127.0.0.1:{server.server_port}/", secret=f"whsec_{uuid.uuid4().hex}"
    )
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP endpoint recording what is posted to it, not registered with the local Stripe."""
    with receiver_server() as receiver:
        yield receiver


@pytest.fixture
def webhook_receiver(local_stripe: LocalStripe) -> Iterator[WebhookReceiver]:
    """A webhook endpoint registered with the local Stripe for one test (its own name and
    secret), removed afterwards."""
    base = local_stripe.status().api_base
    assert base is not None
    name = f"test-{uuid.uuid4().hex[:8]}"
    with receiver_server() as receiver:
        configure_webhook(base, name, receiver.url, receiver.secret)
        try:
            yield receiver
        finally:
            http("DELETE", f"{base}/_config/webhooks/{name}")


ServeFunctions = Callable[..., Functions]


@pytest.fixture(scope="module")
def serve_functions(
    project: Project,
    cluster: Cluster,
    local_stripe: LocalStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServeFunctions]:
    """serve_functions(database, functions_dir=None, names=None, extra_env=None) serves the
    functions (supabase/functions by default) with Supabase's environment, pointing at
    `database` in the embedded cluster and at the local Stripe, whose webhooks then go to the
    served `stripe-webhook`; returns the Functions (status() gives their URLs;
    FunctionsClient(functions).call(name, body, user=…, aal=…) calls one with a signed token).
    Everything it served stops after the module."""
    served: list[Functions] = []

    def serve(
        database: str,
        functions_dir: Path | None = None,
        names: list[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> Functions:
        functions = Functions(
            project,
            functions_dir or project.supabase_dir / "functions",
            tmp_path_factory.mktemp("functions"),
        )
        current = local_stripe.status()
        settings = StripeSettings(current.api_base, API_KEY, current.webhook_secret)
        env = supabase_environment(project, cluster.url(database), settings)
        served.append(functions)
        functions.serve({**env, **(extra_env or {})}, names)
        webhook = functions.webhook_url()
        if webhook is not None:
            local_stripe.deliver_webhooks_to(webhook)
        return functions

    yield serve
    for functions in served:
        functions.stop()
