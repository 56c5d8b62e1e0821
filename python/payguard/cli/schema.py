"""`payguard schema …`: the declarative schema files under supabase/schemas/."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, err, out, print_json, state, target
from payguard.schema.check import MIGRATIONS
from payguard.schema.check import check as run_check
from payguard.schema.dump import as_text, dump
from payguard.schema.server import embedded_server

app = typer.Typer(
    help="The declarative schema files under supabase/schemas/; without a command, the "
    "current schema of a deployed database, by domain.",
    invoke_without_command=True,
)

ServerUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        help="A superuser's URL of the server to build the scratch databases on "
        "(default: the embedded cluster). $DATABASE_URL is not used.",
        show_default=False,
    ),
]


@app.callback()
def schema(
    ctx: typer.Context,
    db_url: DbUrl = None,
    domain: Annotated[
        str | None,
        typer.Option(help="Only this domain (a schema file's name without .sql, or unassigned)."),
    ] = None,
    as_json: Json = False,
) -> None:
    """Show the current schema of a deployed database, by domain: each schema file's tables,
    types and functions (with the triggers and policies that call them), then what no schema
    file creates."""
    if ctx.invoked_subcommand is not None:
        return
    project = state(ctx).project()
    domains = dump(target(project, db_url, deployed=True).url, project, domain=domain)
    if as_json:
        print_json([d.as_dict() for d in domains])
    else:
        out.print(as_text(domains), markup=False, highlight=False)


@app.command()
def check(ctx: typer.Context, db_url: ServerUrl = None, as_json: Json = False) -> None:
    """Build a database from the migrations and one from the schema files, compare them
    object by object, print every difference; exit 1 if there is any."""
    project = state(ctx).project()
    result = run_check(db_url or embedded_server(project), project)
    if as_json:
        print_json(result.as_dict())
    elif result.equal:
        out.print(
            f"the schema files build the same database as the migrations: "
            f"{result.objects} objects compared, {len(result.schema_files)} files, "
            f"{result.seconds} s"
        )
    else:
        for difference in result.differences:
            side = "[red]" if difference.status == f"only in {MIGRATIONS}" else "[yellow]"
            err.print(f"{side}{difference.status:<21}[/] {difference.key}", markup=True)
            if difference.diff:
                err.print(_indent(difference.diff), markup=False)
        err.print(
            f"{len(result.differences)} differences: the schema files do not build the "
            "database the migrations build"
        )
    if not result.equal:
        raise typer.Exit(code=1)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
