"""`payguard schema …`: the declarative schema files under supabase/schemas/."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import boundary, err, out, print_json, state
from payguard.schema.check import MIGRATIONS
from payguard.schema.check import check as run_check
from payguard.schema.server import embedded_server

app = typer.Typer(help="The declarative schema files under supabase/schemas/.")

ServerUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        help="A superuser's URL of the server to build the scratch databases on "
        "(default: the embedded cluster). $DATABASE_URL is not used.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@app.command()
@boundary
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
