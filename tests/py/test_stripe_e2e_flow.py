"""The border with Stripe end to end: the local Stripe (localstripe with the test extension,
stateful, signing and delivering its webhooks), the Edge Functions served by Deno, and the
embedded database. A card is saved, a milestone payment funded by a real PaymentIntent and by
its webhook, released, withdrawn with dual control, paid out through Connect and completed by
`payout.paid`; then both reconciliations are clean. Each step's state is checked by the flow
itself (payguard.testing.stripe_flow)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.bench import webhooks
from payguard.cli import app
from payguard.local_stripe import API_KEY
from payguard.reconcile import reconcile
from payguard.testing.local_stack import FunctionsClient
from payguard.testing.stripe_flow import Border, Flow
from payguard.token_scan import scan


@pytest.fixture(scope="module")
def border(serve_functions, database, database_url, cluster, stripe_test_api) -> Iterator[Border]:
    """Stripe with no objects, the functions served against this module's database."""
    stripe_test_api.forget_everything()
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


def test_a_payment_funded_through_stripe_is_released_withdrawn_paid_out_and_reconciles(
    border, admin_url, local_stripe, monkeypatch
):
    flow = Flow(border).run()
    assert flow.ids["dual_control"], "the amount is meant to need two admins' approval"
    assert set(flow.timings) >= {"fund (PaymentIntent, webhook)", "payout.paid completes it"}

    assert reconcile(admin_url) == []
    runner = CliRunner()
    result = runner.invoke(app, ["reconcile", "--json", "--db-url", admin_url])
    assert (result.exit_code, json.loads(result.output)["differences"]) == (0, []), result.output
    monkeypatch.setenv("STRIPE_SECRET_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", local_stripe.status().api_base)
    result = runner.invoke(app, ["reconcile", "--stripe", "--json", "--db-url", admin_url])
    assert (result.exit_code, json.loads(result.output)["differences"]) == (0, []), result.output

    # No processor token of the flow is stored in the clear anywhere: not in the events kept,
    # the audit trail, the messages or the tables, in any text or json column.
    tokens = [flow.ids[name] for name in ("card", "customer", "account")]
    assert [t[: t.index("_")] for t in tokens] == ["pm", "cus", "acct"]
    assert scan(admin_url) == []
    result = runner.invoke(app, ["keys", "scan", "--json", "--db-url", admin_url])
    assert (result.exit_code, json.loads(result.output)["findings"]) == (0, []), result.output
    with psycopg.connect(admin_url) as conn:
        events = conn.execute("select string_agg(payload::text, ' ') from public.webhook_events")
        stored = str(events.fetchone()[0])  # type: ignore[index]
    assert not [t for t in tokens if t in stored], "the events are stored with lookups"
    assert border.lookup_of(flow.ids["account"]) in stored, (
        "the account's lookup, by which it matched"
    )


def test_the_webhook_benchmark_applies_every_event_both_ways_and_times_the_flow(
    border, local_stripe
):
    """A smoke run of `payguard bench --only webhooks` at tiny sizes, on this module's stack
    (after the flow above, whose reconciliation with Stripe it would spoil: its events name
    PaymentIntents Stripe never made)."""
    before = border.scalar("select count(*) from public.milestone_payments where status = 'funded'")
    result = webhooks.run(
        border,
        border.functions.functions.status()["stripe-webhook"],
        local_stripe.webhook_secret(),
        events=6,
        clients=2,
        rounds=2,
        flows=1,
    )
    assert [(r.side, r.events) for r in result.rounds] == [
        ("function", 3),
        ("sql", 3),
        ("sql", 3),
        ("function", 3),
    ]
    assert result.function_rate > 0
    assert result.sql_rate > 0
    assert result.ratio > 0
    # 12 events and 2 x 4 warming up funded 20 payments; the flow's is released by the end.
    after = border.scalar("select count(*) from public.milestone_payments where status = 'funded'")
    assert after - before == 20
    assert len(result.flow_seconds) == 1
    assert result.flow_seconds[0] > 0
    assert result.flow_median == result.flow_seconds[0]
