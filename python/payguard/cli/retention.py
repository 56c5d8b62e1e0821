"""`payguard retention …`: remove the closed payment records past their retention
(payguard.retention)."""

from __future__ import annotations

import typer

from payguard.cli.common import DbUrl, Json, deployed_url, out, print_json
from payguard.retention import purge_closed_records

app = typer.Typer(help="Retention of payment records.", no_args_is_help=True)


@app.command()
def purge(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Remove the closed milestone payments, with their disputes, funding attempts and
    processor transactions, whose last change is more than seven years old (the ledger's
    balances are kept); the run is audited. Run it as the database owner."""
    summary = purge_closed_records(deployed_url(ctx, db_url))
    if as_json:
        print_json(summary)
        return
    removed = {table: n for table, n in summary["removed"].items() if n}
    if removed:
        listed = ", ".join(f"{n} {table}" for table, n in sorted(removed.items()))
        out.print(f"purged records closed before {summary['older_than']}: {listed}", markup=False)
    else:
        out.print(f"nothing to purge: no record closed before {summary['older_than']}")
