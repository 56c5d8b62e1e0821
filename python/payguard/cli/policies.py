"""`payguard policies …`: the policy specs, the SQL generated from them, and the check."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import boundary, err, out, state, target
from payguard.cli.deploy import DbUrl
from payguard.policies.check import differences
from payguard.policies.generate import generate as generate_migration
from payguard.policies.matrix import build as build_matrix
from payguard.policies.spec import load_specs

app = typer.Typer(help="Policies as code: specs under policies/.", no_args_is_help=True)


@app.command()
@boundary
def generate(ctx: typer.Context) -> None:
    """Write the specs' SQL as a new migration (nothing, if the newest one already holds it)."""
    project = state(ctx).project()
    result = generate_migration(project)
    where = result.path.relative_to(project.root)
    out.print(f"wrote {where}" if result.written else f"up to date: {where}")


@app.command()
@boundary
def check(ctx: typer.Context, db_url: DbUrl = None) -> None:
    """List every difference between the specs and a database; exit 1 if there is any."""
    project = state(ctx).project()
    specs = load_specs(project.policies_dir)
    found = differences(target(project, db_url).url, specs)
    if not found:
        policies = sum(len(s.policies) for s in specs)
        out.print(f"policies match the specs: {len(specs)} tables, {policies} policies")
        return
    for line in found:
        err.print(line, markup=False)
    err.print(f"{len(found)} differences between the database and the specs")
    raise typer.Exit(code=1)


@app.command()
@boundary
def matrix(
    ctx: typer.Context,
    db_url: DbUrl = None,
    stale: Annotated[
        bool,
        typer.Option("--check", help="Only check that docs/access-matrix.md is current."),
    ] = False,
) -> None:
    """Write docs/access-matrix.md from the database catalog and the specs."""
    project = state(ctx).project()
    text = build_matrix(target(project, db_url).url, load_specs(project.policies_dir))
    path = project.access_matrix_file
    where = path.relative_to(project.root)
    current = path.read_text() if path.is_file() else None
    if stale:
        if current != text:
            err.print(f"{where} is stale: run `payguard policies matrix` and commit it")
            raise typer.Exit(code=1)
        out.print(f"{where} is current")
        return
    if current == text:
        out.print(f"up to date: {where}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    out.print(f"wrote {where}")
