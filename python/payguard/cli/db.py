"""`payguard db …`: the embedded PostgreSQL 15 cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import boundary, out, print_json, state
from payguard.cli.deploy import print_step
from payguard.cluster import DATABASE, Cluster
from payguard.errors import PayguardError
from payguard.reset import reset as reset_database

app = typer.Typer(
    help="Run the embedded PostgreSQL 15 cluster under .payguard/.", no_args_is_help=True
)

# No schema diff tool reproduced payguard's schema exactly (docs/schema-changes.md), so
# `db diff` generates nothing and says what to do instead.
NO_DIFF = (
    "payguard does not generate migrations: no schema diff tool tried reproduces this schema "
    "exactly (grants, column grants, forced RLS, function settings and comments went missing; "
    "docs/schema-changes.md). Change the schema file under supabase/schemas/ first, write its "
    "migration by hand under supabase/migrations/, and prove the two give the same database "
    "with `payguard schema check`."
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
Database = Annotated[str, typer.Option(help="The database in the cluster.")]


@app.command()
@boundary
def start(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Listen on this port (kept for later starts).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Start the cluster (creating it on first use) and print its URL. Safe to run again."""
    cluster = Cluster.for_project(state(ctx).project())
    status = cluster.start(port)
    if as_json:
        print_json({**status.as_dict(), "url": cluster.url()})
    else:
        out.print(cluster.url())


@app.command()
@boundary
def stop(ctx: typer.Context) -> None:
    """Stop the cluster. Stopping a stopped cluster is not an error."""
    cluster = Cluster.for_project(state(ctx).project())
    out.print("stopped" if cluster.stop() else "not running")


@app.command()
@boundary
def status(ctx: typer.Context, as_json: Json = False) -> None:
    """Say whether the cluster runs, and where."""
    cluster = Cluster.for_project(state(ctx).project())
    current = cluster.status()
    if as_json:
        url = cluster.url() if current.port is not None else None
        print_json({**current.as_dict(), "url": url})
        return
    if not current.running:
        out.print(f"stopped ({'initialised' if cluster.initialized() else 'not created yet'})")
        return
    out.print(f"running  pid {current.pid}  port {current.port}")
    out.print(f"url      {cluster.url()}")
    out.print(f"data     {current.data_dir}")


@app.command()
@boundary
def destroy(ctx: typer.Context) -> None:
    """Stop the cluster and delete it with all its data."""
    gone = Cluster.destroy_for_project(state(ctx).project())
    out.print("destroyed" if gone else "no cluster to destroy")


@app.command()
@boundary
def url(
    ctx: typer.Context,
    database: Database = DATABASE,
    admin: Annotated[
        bool, typer.Option("--admin", help="The superuser's URL, over the unix socket.")
    ] = False,
) -> None:
    """Print the cluster's URL (the `postgres` role over TCP, as the Supabase CLI takes it)."""
    cluster = Cluster.for_project(state(ctx).project())
    out.print(cluster.admin_url(database) if admin else cluster.url(database))


@app.command()
@boundary
def reset(
    ctx: typer.Context,
    database: Database = DATABASE,
    seed: Annotated[bool, typer.Option(help="Run supabase/seed.sql after the migrations.")] = True,
) -> None:
    """Drop everything and redeploy: the whole cluster for the default database, else just
    that database."""
    report = reset_database(state(ctx).project(), database=database, seed=seed, on_step=print_step)
    out.print(f"reset: {len(report.applied)} migrations applied to {database}")


@app.command()
@boundary
def diff(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("-f", "--file", help="The migration's name.")] = None,
) -> None:
    """Not generated: write the migration by hand (docs/schema-changes.md says why)."""
    raise PayguardError(NO_DIFF)
