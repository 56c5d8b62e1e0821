"""`payguard test`: the pgTAP and pytest suites."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import state
from payguard.testrun import prepare, run_tests


def run_suites(
    ctx: typer.Context,
    sql: Annotated[bool, typer.Option("--sql", help="Run the pgTAP suite.")] = False,
    py: Annotated[bool, typer.Option("--py", help="Run the pytest suite.")] = False,
    keyword: Annotated[
        str | None,
        typer.Option("-k", help="Only tests matching this (pytest -k; a file-name part for SQL)."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="pg_prove processes and pytest workers at once (default: processors + 1).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Replay the money model with this seed (it prints its own)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Steps of the money model (default 2000)."),
    ] = None,
    prepare_only: Annotated[
        bool,
        typer.Option(
            "--prepare",
            help="Only start the embedded cluster and make its test template current, so that "
            "what runs next (pg_prove by hand, several checks at once) finds both ready.",
        ),
    ] = False,
) -> None:
    """Run both suites (or the one asked for) against fresh clones of the template database."""
    if prepare_only:
        prepare(state(ctx).project())
        return
    run_sql, run_py = (sql, py) if (sql or py) else (True, True)
    code = run_tests(
        state(ctx).project(),
        sql=run_sql,
        py=run_py,
        keyword=keyword,
        jobs=jobs,
        seed=seed,
        steps=steps,
    )
    raise typer.Exit(code=code)
