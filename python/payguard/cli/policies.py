"""`payguard policies …`: the policy specs, the SQL generated from them, and the check."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, err, out, print_json, state, target
from payguard.errors import ExitCode
from payguard.policies.check import differences
from payguard.policies.generate import generate as generate_policies
from payguard.policies.matrix import build as build_matrix
from payguard.policies.spec import load_specs

app = typer.Typer(help="Policies as code: specs under policies/.", no_args_is_help=True)


@app.command()
def generate(
    ctx: typer.Context,
    as_json: Json = False,
) -> None:
    """Write the specs' SQL to supabase/schemas/policies.sql, and a new migration holding the
    blocks of the tables whose SQL changed (none if no table changed)."""
    project = state(ctx).project()
    result = generate_policies(project)
    schema_file = str(result.schema_file.relative_to(project.root))
    migration = str(result.migration.relative_to(project.root)) if result.migration else None
    if as_json:
        print_json({"schema_file": schema_file, "migration": migration, "tables": result.tables})
        return
    out.print(f"wrote {schema_file}" if result.schema_written else f"up to date: {schema_file}")
    if migration is None:
        out.print("no table's policies changed: no migration written")
        return
    out.print(f"wrote {migration}: {', '.join(result.tables)}")
    if result.removed:
        out.print(f"specs removed (policies dropped, grants revoked): {', '.join(result.removed)}")


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
