"""`payguard stripe …`: the local Stripe (localstripe) in the background."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, deployed_url, out, print_json, state
from payguard.functions import Functions
from payguard.local_stripe import API_KEY, LocalStripe, LocalStripeStatus
from payguard.stripe_recover import recover as run_recover

app = typer.Typer(
    help="Run localstripe, a local Stripe, under .payguard/stripe/; recover refused charges.",
    no_args_is_help=True,
)


@app.command()
def start(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Listen on this port (default: a free one).")
    ] = None,
    extension: Annotated[
        Path | None,
        typer.Option(
            help="Load a TEST extension into localstripe (tests/stripe/extension.py adds Connect "
            "accounts, transfers, payouts and disputes); for tests and local development only.",
            dir_okay=False,
        ),
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Forget the objects kept so far.")] = False,
    as_json: Json = False,
) -> None:
    """Start localstripe (plain unless --extension) and, when the functions are served,
    deliver its webhooks to `stripe-webhook`. Safe to run again."""
    project = state(ctx).project()
    local = LocalStripe.for_project(project)
    local.start(port=port, extension=extension, fresh=fresh)
    target = Functions.for_project(project).webhook_url()
    if target is not None:
        local.deliver_webhooks_to(target)
    show(local.status(), as_json)


@app.command()
def stop(ctx: typer.Context, as_json: Json = False) -> None:
    """Stop localstripe. Stopping it when it does not run is not an error."""
    stopped = LocalStripe.for_project(state(ctx).project()).stop()
    if as_json:
        print_json({"stopped": stopped})
    else:
        out.print("stopped" if stopped else "not running")


@app.command()
def status(ctx: typer.Context, as_json: Json = False) -> None:
    """Say whether localstripe runs, where, and the webhook signing secret."""
    show(LocalStripe.for_project(state(ctx).project()).status(), as_json)


def show(current: LocalStripeStatus, as_json: bool) -> None:
    if as_json:
        print_json({**current.as_dict(), "api_key": API_KEY})
        return
    if not current.running:
        out.print("stopped")
    else:
        out.print(f"running         pid {current.pid}  port {current.port}")
        out.print(f"api base        {current.api_base}  (STRIPE_API_BASE)")
        out.print(f"api key         {API_KEY}  (any sk_ key is accepted)")
        out.print(
            f"webhooks to     {current.webhook_url or '(none yet: payguard functions serve)'}"
        )
        out.print(f"extension       {current.extension or '(none: plain localstripe)'}")
    out.print(f"webhook secret  {current.webhook_secret}  (STRIPE_WEBHOOK_SECRET)")


@app.command()
def recover(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Recover the charges the database refused or did not record (fund the payment while it
    can be, else owe the charge back), as payment_service; list the refunds owed, which the
    refunds function sends to Stripe. Safe to run again."""
    url = deployed_url(ctx, db_url)
    recovered, due = run_recover(url)
    if as_json:
        print_json(
            {
                "recoveries": [r.__dict__ for r in recovered],
                "refunds_due": [d.__dict__ for d in due],
            }
        )
        return
    for r in recovered:
        decided = f"{r.recovery or 'undecided'}{', resolved' if r.resolved else ''}"
        out.print(f"{r.kind} {r.payment_intent_id} ({r.inconsistency_id}): {decided}", markup=False)
    for d in due:
        refused = f", last refused: {d.last_failure_code}" if d.last_failure_code else ""
        out.print(
            f"refund due: {d.payment_intent_id} {d.amount_minor} {d.currency} ({d.reason}, key "
            f"{d.idempotency_key}{refused})",
            markup=False,
        )
    out.print(f"{len(recovered)} recovered, {len(due)} refunds due (sent by the refunds function)")
