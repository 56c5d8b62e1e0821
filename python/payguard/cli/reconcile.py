"""`payguard reconcile`: does the money add up?"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from payguard.cli.common import boundary, err, out, print_json, state, target
from payguard.cli.deploy import DbUrl
from payguard.errors import PayguardError
from payguard.local_stripe import API_KEY, LocalStripe, stripe_client
from payguard.project import Project
from payguard.reconcile import CHECKS
from payguard.reconcile import reconcile as run_reconcile
from payguard.stripe_reconcile import CHECKS as STRIPE_CHECKS
from payguard.stripe_reconcile import reconcile_stripe


@boundary
def reconcile(
    ctx: typer.Context,
    db_url: DbUrl = None,
    with_stripe: Annotated[
        bool,
        typer.Option(
            "--stripe",
            help="Also compare payments and withdrawals with Stripe's charges and payouts "
            "(Stripe at $STRIPE_API_BASE with $STRIPE_SECRET_KEY, else the local Stripe).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Check the ledger's invariants, the cached balances and the funded payments (and, with
    --stripe, Stripe's records); exit 1 on any difference."""
    project = state(ctx).project()
    url = target(project, db_url).url
    found = run_reconcile(url)
    checks = len(CHECKS)
    if with_stripe:
        api_base, api_key = stripe_endpoint(project)
        found += reconcile_stripe(url, stripe_client(api_base, api_key))
        checks += len(STRIPE_CHECKS)
    if as_json:
        print_json([{"check": d.check, "subject": d.subject} for d in found])
    elif not found:
        out.print(f"reconciled: {checks} checks, no difference")
    else:
        for difference in found:
            err.print(str(difference), markup=False)
        err.print(f"{len(found)} differences")
    if found:
        raise typer.Exit(code=1)


def stripe_endpoint(project: Project) -> tuple[str, str]:
    """The Stripe to compare with: $STRIPE_API_BASE (or Stripe's own API) with
    $STRIPE_SECRET_KEY when the key is set, else the running local Stripe."""
    key = os.environ.get("STRIPE_SECRET_KEY")
    if key:
        return os.environ.get("STRIPE_API_BASE") or "https://api.stripe.com", key
    local = LocalStripe.for_project(project).status()
    if local.api_base is None:
        raise PayguardError(
            "no Stripe to compare with: set STRIPE_SECRET_KEY (and STRIPE_API_BASE), or start "
            "the local Stripe with `payguard stripe start`"
        )
    return local.api_base, API_KEY
