"""`payguard functions serve`: each function served by Deno with the environment Supabase
gives it, pointing at a test database and the local Stripe, whose webhooks reach the served
`stripe-webhook`. The functions here are throwaway ones written by the tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import stripe
from typer.testing import CliRunner

from payguard.cli import app
from payguard.errors import PayguardError
from payguard.jwt import verify
from payguard.testing.local_stack import FunctionsClient

# Answers with its request's path, the environment a function sees, and the bearer token.
ECHO = """
const names = [
  "SUPABASE_URL", "SUPABASE_DB_URL", "SUPABASE_JWT_SECRET", "SUPABASE_ANON_KEY",
  "SUPABASE_SERVICE_ROLE_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE",
  "PAYGUARD_ONBOARDING_RETURN_URL", "PAYGUARD_ONBOARDING_REFRESH_URL", "DATABASE_URL",
];
export default {
  fetch(req: Request): Response {
    return Response.json({
      path: new URL(req.url).pathname,
      authorization: req.headers.get("authorization"),
      env: Object.fromEntries(names.map((n) => [n, Deno.env.get(n) ?? null])),
    });
  },
};
"""

# Passes what Stripe delivers on to FORWARD_TO, untouched, and answers with its answer.
FORWARD = """
export default {
  async fetch(req: Request): Promise<Response> {
    const answer = await fetch(Deno.env.get("FORWARD_TO")!, {
      method: "POST",
      body: await req.arrayBuffer(),
      headers: { "stripe-signature": req.headers.get("stripe-signature") ?? "" },
    });
    await answer.body?.cancel();
    return new Response(null, { status: answer.status });
  },
};
"""


@pytest.fixture(scope="module")
def functions_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("supabase-functions")
    for name, source in (("echo", ECHO), ("stripe-webhook", FORWARD)):
        (root / name).mkdir()
        (root / name / "index.ts").write_text(source)
    (root / "_shared").mkdir()
    (root / "_shared" / "index.ts").write_text("export const shared = 1;\n")
    (root / "notes").mkdir()  # no index.ts: not a function
    return root


def listening(url: str) -> bool:
    port = int(url.split(":")[2].split("/")[0])
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_function_sees_supabase_environment_for_the_test_database(
    serve_functions, functions_dir, database, cluster, local_stripe
):
    functions = serve_functions(database, functions_dir, names=["echo"])
    url = functions.status()["echo"]
    answer = FunctionsClient(functions).call(
        "echo", {"hello": 1}, user="6f1a2b3c-0000-4000-8000-000000000001", aal="aal2"
    )
    assert answer.status == 200, answer.body
    token = answer.body["authorization"].removeprefix("Bearer ")
    env = answer.body["env"]
    stripe_now = local_stripe.status()
    assert answer.body["path"] == "/echo"
    assert env["SUPABASE_DB_URL"] == cluster.url(database)
    assert env["STRIPE_API_BASE"] == stripe_now.api_base
    assert env["STRIPE_WEBHOOK_SECRET"] == stripe_now.webhook_secret
    assert env["STRIPE_SECRET_KEY"].startswith("sk_test_")
    assert env["PAYGUARD_ONBOARDING_RETURN_URL"] == (
        "http://127.0.0.1:3000/payouts/onboarding/return"
    ), "the app's page under config.toml's site_url"
    assert env["PAYGUARD_ONBOARDING_REFRESH_URL"] == (
        "http://127.0.0.1:3000/payouts/onboarding/refresh"
    )
    assert env["DATABASE_URL"] is None, "payguard's own environment leaked into the function"
    secret = env["SUPABASE_JWT_SECRET"]
    claims = verify(token, secret)
    assert (claims["sub"], claims["aal"]) == ("6f1a2b3c-0000-4000-8000-000000000001", "aal2")
    assert verify(env["SUPABASE_ANON_KEY"], secret)["role"] == "anon"
    assert verify(env["SUPABASE_SERVICE_ROLE_KEY"], secret)["role"] == "service_role"

    assert functions.stop() == ["echo"]
    assert functions.status() == {}
    assert not listening(url)


def test_webhooks_reach_the_served_stripe_webhook_signed_with_the_known_secret(
    serve_functions, functions_dir, database, local_stripe, stripe_client, http_receiver
):
    functions = serve_functions(
        database,
        functions_dir,
        names=["stripe-webhook"],
        extra_env={"FORWARD_TO": http_receiver.url},
    )
    assert local_stripe.status().webhook_url == functions.status()["stripe-webhook"]
    customer = stripe_client.v1.customers.create({"email": "webhook@example.test"})
    forwarded = http_receiver.wait_for_event("customer.created", customer.id)
    event = stripe.Webhook.construct_event(
        forwarded.body, forwarded.signature, local_stripe.webhook_secret()
    )
    assert event.data.object.id == customer.id


def test_an_unknown_function_is_refused_and_nothing_is_served(
    serve_functions, functions_dir, database
):
    with pytest.raises(PayguardError, match="no function nope"):
        serve_functions(database, functions_dir, names=["nope"])


def test_the_cli_reports_nothing_served_and_stops_nothing(scratch_project):
    runner = CliRunner()
    result = runner.invoke(
        app, ["--workdir", str(scratch_project.root), "functions", "status", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {}
    result = runner.invoke(app, ["--workdir", str(scratch_project.root), "functions", "stop"])
    assert (result.exit_code, result.output.strip()) == (0, "none served")
