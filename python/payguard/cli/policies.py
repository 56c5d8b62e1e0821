"""`payguard policies …`: the policy specs, the SQL generated from them, and the check."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, err, out, print_json, state, target
from payguard.errors import ExitCode
from payguard.policies.check import differences
from payguard.policies.generate import generate as generate_migration
from payguard.policies.matrix import build as build_matrix
from payguard.policies.spec import load_specs

app = typer.Typer(help="Policies as code: specs under policies/.", no_args_is_help=True)


@app.command()
def generate(ctx: typer.Context, as_json: Json = False) -> None:
    """Write the specs' SQL as a new migration (nothing, if the newest one already holds it)."""
    project = state(ctx).project()
    result = generate_migration(project)
    where = result.path.relative_to(project.root)
    if as_json:
        print_json({"path": where.as_posix(), "written": result.written})
    else:
        out.print(f"wrote {where}" if result.written else f"up to date: {where}")


@app.command()
def check(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """List every difference between the specs and a database; exit 1 if there is any."""
    project = state(ctx).project()
    specs = load_specs(project.policies_dir)
    found = differences(target(project, db_url, deployed=True).url, specs)
    policies = sum(len(s.policies) for s in specs)
    if as_json:
        print_json(
            {
                "ok": not found,
                "tables": len(specs),
                "policies": policies,
                "count": len(found),
                "differences": found,
            }
        )
    elif not found:
        out.print(f"policies match the specs: {len(specs)} tables, {policies} policies")
    else:
        for line in found:
            err.print(line, markup=False)
        err.print(f"{len(found)} differences between the database and the specs")
    if found:
        raise typer.Exit(code=ExitCode.FINDING)


@app.command()
def matrix(
    ctx: typer.Context,
    db_url: DbUrl = None,
    stale: Annotated[
        bool,
        typer.Option("--check", help="Only check that docs/access-matrix.md is current."),
    ] = False,
    as_json: Json = False,
) -> None:
    """Write docs/access-matrix.md from the database catalog and the specs."""
    project = state(ctx).project()
    text = build_matrix(
        target(project, db_url, deployed=True).url, load_specs(project.policies_dir)
    )
    path = project.access_matrix_file
    where = path.relative_to(project.root)
    current = path.read_text() if path.is_file() else None
    if stale:
        if as_json:
            print_json({"path": where.as_posix(), "current": current == text})
        if current != text:
            if not as_json:
                err.print(f"{where} is stale: run `payguard policies matrix` and commit it")
            raise typer.Exit(code=ExitCode.FINDING)
        if not as_json:
            out.print(f"{where} is current")
        return
    written = current != text
    if written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if as_json:
        print_json({"path": where.as_posix(), "written": written})
    else:
        out.print(f"wrote {where}" if written else f"up to date: {where}")
