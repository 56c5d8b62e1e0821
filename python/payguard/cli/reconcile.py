"""`payguard reconcile`: does the money add up?"""

from __future__ import annotations

import os
import re
from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, KeyFile, err, out, print_json, state, target
from payguard.errors import ExitCode, PayguardError
from payguard.local_stripe import API_KEY, LocalStripe, stripe_client
from payguard.project import Project
from payguard.reconcile import CHECKS, Difference
from payguard.reconcile import reconcile as run_reconcile
from payguard.token_index import INDEX_KEYS_VARIABLE
from payguard.token_keys import load_or_local

# The ids a difference names: payguard's UUIDs and Stripe's prefixed ids (pi_..., ch_...).
IDS = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\b(?:acct|ch|cus|dp|du|evt|in|pi|pm|po|py|re|seti|tr|txn)_[A-Za-z0-9]+\b"
)


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
    index_key_file: KeyFile = None,
    as_json: Json = False,
) -> None:
    """Check the ledger's invariants, the cached balances and the funded payments (and, with
    --stripe, Stripe's records); exit 1 on any difference."""
    project = state(ctx).project()
    url = target(project, db_url, deployed=True).url
    found = [("database", d) for d in run_reconcile(url)]
    checks = {"database": len(CHECKS), "stripe": 0}
    if with_stripe:
        # Imported only here: the Stripe SDK is slow to import.
        from payguard.stripe_reconcile import CHECKS as STRIPE_CHECKS
        from payguard.stripe_reconcile import reconcile_stripe

        api_base, api_key = stripe_endpoint(project)
        # Connected accounts are matched by their lookups: the index keys, never the envelopes'.
        index_keys = load_or_local(INDEX_KEYS_VARIABLE, index_key_file, project.state_dir)
        client = stripe_client(api_base, api_key)
        found += [("stripe", d) for d in reconcile_stripe(url, client, index_keys)]
        checks["stripe"] = len(STRIPE_CHECKS)
    if as_json:
        print_json(
            {
                "ok": not found,
                "checks_run": {**checks, "total": sum(checks.values())},
                "count": len(found),
                "differences": [as_finding(source, d) for source, d in found],
            }
        )
    elif not found:
        out.print(f"reconciled: {sum(checks.values())} checks, no difference")
    else:
        for _, difference in found:
            err.print(str(difference), markup=False)
        err.print(f"{len(found)} differences")
    if found:
        raise typer.Exit(code=ExitCode.FINDING)


def as_finding(source: str, difference: Difference) -> dict[str, object]:
    """A difference for machines: its check, where it was found, what differs, the ids."""
    return {
        "check": difference.check,
        "source": source,
        "subject": difference.subject,
        "ids": list(dict.fromkeys(IDS.findall(difference.subject))),
    }


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
