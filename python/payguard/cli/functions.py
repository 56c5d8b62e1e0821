"""`payguard functions …`: the Edge Functions served locally by Deno."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard.cli.common import Json, err, out, print_json, state
from payguard.cluster import DATABASE, Cluster
from payguard.functions import Functions, StripeSettings, supabase_environment
from payguard.local_stripe import API_KEY, LocalStripe

app = typer.Typer(help="Serve the Edge Functions locally with Deno.", no_args_is_help=True)

FunctionsDir = Annotated[
    Path | None,
    typer.Option(
        help="The folder of the functions (default: supabase/functions).", file_okay=False
    ),
]


@app.command()
def serve(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="The functions to serve (default: all).")
    ] = None,
    database: Annotated[str, typer.Option(help="The database in the embedded cluster.")] = DATABASE,
    functions_dir: FunctionsDir = None,
    as_json: Json = False,
) -> None:
    """Serve the functions in the background, pointing at the embedded database and the local
    Stripe (start it first: `payguard stripe start`), and deliver its webhooks to
    `stripe-webhook`."""
    project = state(ctx).project()
    cluster = Cluster.for_project(project)
    cluster.start()
    local = LocalStripe.for_project(project)
    stripe_status = local.status()
    if not stripe_status.running:
        err.print(
            "localstripe does not run: the functions will not reach Stripe "
            "(start it with `payguard stripe start`)"
        )
    settings = StripeSettings(stripe_status.api_base, API_KEY, stripe_status.webhook_secret)
    functions = Functions.for_project(project, functions_dir)
    served = functions.serve(
        supabase_environment(project, cluster.url(database), settings), names or None
    )
    target = functions.webhook_url()
    if target is not None and stripe_status.running:
        local.deliver_webhooks_to(target)
    show(served, as_json)


@app.command()
def stop(ctx: typer.Context, functions_dir: FunctionsDir = None, as_json: Json = False) -> None:
    """Stop every served function."""
    stopped = Functions.for_project(state(ctx).project(), functions_dir).stop()
    if as_json:
        print_json({"stopped": stopped})
    else:
        out.print(f"stopped {', '.join(stopped)}" if stopped else "none served")


@app.command()
def status(ctx: typer.Context, functions_dir: FunctionsDir = None, as_json: Json = False) -> None:
    """List the served functions and their URLs."""
    show(Functions.for_project(state(ctx).project(), functions_dir).status(), as_json)


def show(served: dict[str, str], as_json: bool) -> None:
    if as_json:
        print_json(served)
    elif not served:
        out.print("none served")
    else:
        for name, url in served.items():
            out.print(f"{name:<20} {url}")
