"""`payguard policies …`: the policy specs, the SQL generated from them, and the check."""

from __future__ import annotations

import typer

from payguard.cli.common import boundary, err, out, state, target
from payguard.cli.deploy import DbUrl
from payguard.policies.check import differences
from payguard.policies.generate import generate as generate_migration
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
