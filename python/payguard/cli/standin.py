"""`payguard standin …`: the local Supabase stand-in, on its own."""

from __future__ import annotations

import typer

from payguard.cli.common import DbUrl, Json, out, print_json, state, target
from payguard.db import redact
from payguard.standin import install as install_standin

app = typer.Typer(
    help="The Supabase stand-in: the roles, auth schema, extensions and settings a Supabase "
    "project has and a plain PostgreSQL does not.",
    no_args_is_help=True,
)


@app.command()
def install(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Install only the stand-in into a plain database (as a superuser), so that `supabase db
    push --db-url` can apply the migrations there; a database that has an `auth` schema is
    left alone."""
    where = target(state(ctx).project(), db_url)
    installed = install_standin(where.url)
    if as_json:
        print_json({"installed": installed, "target": redact(where.url)})
    elif installed:
        out.print(f"installed the Supabase stand-in into {redact(where.url)}", markup=False)
    else:
        out.print(
            f"{redact(where.url)} already has an `auth` schema: nothing installed", markup=False
        )
