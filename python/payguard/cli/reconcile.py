"""`payguard reconcile`: does the money add up?"""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import boundary, err, out, print_json, state, target
from payguard.cli.deploy import DbUrl
from payguard.reconcile import CHECKS
from payguard.reconcile import reconcile as run_reconcile


@boundary
def reconcile(
    ctx: typer.Context,
    db_url: DbUrl = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Check the ledger's invariants, the cached balances and the funded payments; exit 1 on
    any difference."""
    found = run_reconcile(target(state(ctx).project(), db_url).url)
    if as_json:
        print_json([{"check": d.check, "subject": d.subject} for d in found])
    elif not found:
        out.print(f"reconciled: {len(CHECKS)} checks, no difference")
    else:
        for difference in found:
            err.print(str(difference), markup=False)
        err.print(f"{len(found)} differences")
    if found:
        raise typer.Exit(code=1)
