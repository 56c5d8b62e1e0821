"""`payguard deploy`: apply pending migrations, as the Supabase CLI would."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, out, print_json, state, target
from payguard.db import redact
from payguard.deploy import Step
from payguard.deploy import deploy as run_deploy

__all__ = ["DbUrl", "deploy", "print_step"]  # DbUrl: kept here for commands importing it


def print_step(step: Step) -> None:
    took = f"  {step.ms:8.1f} ms" if step.ms is not None else ""
    colour = {"applied": "green", "pending": "yellow", "skipped": "dim", "recorded": "dim"}[
        step.status
    ]
    status = f"[{colour}]{step.status:>8}[/]"
    out.print(f"{status}  {step.kind:<9} {step.name}{took}", markup=True)


def deploy(
    ctx: typer.Context,
    db_url: DbUrl = None,
    seed: Annotated[bool, typer.Option("--seed", help="Run supabase/seed.sql afterwards.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be applied; change nothing.")
    ] = False,
    as_json: Json = False,
) -> None:
    """Apply the pending supabase/migrations to a database, each in its own transaction."""
    project = state(ctx).project()
    where = target(project, db_url)
    report = run_deploy(
        where.url, project, seed=seed, dry_run=dry_run, on_step=None if as_json else print_step
    )
    if as_json:
        print_json({**report.as_dict(), "target": redact(where.url)})
        return
    pending = [s for s in report.steps if s.kind == "migration"]
    if not pending:
        out.print(f"up to date: {report.already_applied} migrations already applied")
    elif dry_run:
        out.print(f"dry run: {len(pending)} migrations would be applied; nothing was changed")
    else:
        out.print(
            f"deployed {len(pending)} migrations ({report.already_applied} were applied before)"
        )
