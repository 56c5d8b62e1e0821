"""`payguard db …`: the embedded PostgreSQL 15 cluster."""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Annotated, TextIO

import typer

from payguard.cli.common import DbUrl, Json, out, print_json, state
from payguard.cli.deploy import print_step
from payguard.cluster import DATABASE, Cluster, pg_bindir
from payguard.databases import check_database_name
from payguard.db import check_url, resolve_url
from payguard.errors import DatabaseError, ExitCode, PayguardError
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

Database = Annotated[str, typer.Option(help="The database in the cluster.")]
Admin = Annotated[bool, typer.Option("--admin", help="The superuser's URL, over the unix socket.")]


@app.command()
def start(
    ctx: typer.Context,
    port: Annotated[
        int | None, typer.Option(help="Listen on this port (kept for later starts).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Start the cluster (creating it on first use) and print its URL. Safe to run again."""
    cluster = Cluster.for_project(state(ctx).project())
    try:
        status = cluster.start(port)
    except PayguardError as exc:
        raise DatabaseError(str(exc)) from None
    if as_json:
        print_json({**status.as_dict(), "url": cluster.url()})
    else:
        out.print(cluster.url())


@app.command()
def stop(ctx: typer.Context, as_json: Json = False) -> None:
    """Stop the cluster. Stopping a stopped cluster is not an error."""
    stopped = Cluster.for_project(state(ctx).project()).stop()
    if as_json:
        print_json({"stopped": stopped})
    else:
        out.print("stopped" if stopped else "not running")


@app.command()
def status(ctx: typer.Context, as_json: Json = False) -> None:
    """Say whether the cluster runs, and where; exit 3 when it does not run."""
    cluster = Cluster.for_project(state(ctx).project())
    current = cluster.status()
    if as_json:
        url = cluster.url() if current.port is not None else None
        print_json({**current.as_dict(), "url": url, "initialised": cluster.initialized()})
    elif not current.running:
        out.print(f"stopped ({'initialised' if cluster.initialized() else 'not created yet'})")
    else:
        out.print(f"running  pid {current.pid}  port {current.port}")
        out.print(f"url      {cluster.url()}")
        where = f"  (in memory: {current.data_in_memory})" if current.data_in_memory else ""
        out.print(f"data     {current.data_dir}{where}")
    if not current.running:
        raise typer.Exit(code=ExitCode.DATABASE)


@app.command()
def destroy(ctx: typer.Context, as_json: Json = False) -> None:
    """Stop the cluster and delete it with all its data."""
    gone = Cluster.destroy_for_project(state(ctx).project())
    if as_json:
        print_json({"destroyed": gone})
    else:
        out.print("destroyed" if gone else "no cluster to destroy")


@app.command()
def url(
    ctx: typer.Context,
    database: Database = DATABASE,
    admin: Admin = False,
    as_json: Json = False,
) -> None:
    """Print the cluster's URL (the `postgres` role over TCP, as the Supabase CLI takes it)."""
    check_database_name(database)
    cluster = Cluster.for_project(state(ctx).project())
    found = cluster.admin_url(database) if admin else cluster.url(database)
    if as_json:
        print_json({"url": found, "database": database, "admin": admin})
    else:
        out.print(found, markup=False)


@app.command()
def shell(
    ctx: typer.Context,
    psql_args: Annotated[
        list[str] | None,
        typer.Argument(help="Passed to psql (after --), e.g. -- -c 'select 1'.", metavar="PSQL"),
    ] = None,
    db_url: DbUrl = None,
    database: Database = DATABASE,
    admin: Admin = False,
) -> None:
    """Open psql on the database: --db-url / $DATABASE_URL, else the embedded cluster's
    (started if needed) as `postgres`, or with --admin as its superuser."""
    given = resolve_url(db_url)
    if given is not None:
        found = check_url(given, source="--db-url" if db_url else "$DATABASE_URL")
    else:
        check_database_name(database)
        cluster = Cluster.for_project(state(ctx).project())
        try:
            cluster.start()
        except PayguardError as exc:
            raise DatabaseError(f"the embedded database did not start: {exc}") from None
        found = cluster.admin_url(database) if admin else cluster.url(database)
    psql = psql_program()
    os.execv(psql, [psql, *(psql_args or []), found])  # noqa: S606 - psql replaces payguard


def psql_program() -> str:
    """PostgreSQL 15's psql, else the one on PATH."""
    try:
        bundled = pg_bindir() / "psql"
    except PayguardError:
        bundled = None
    if bundled is not None and bundled.is_file():
        return str(bundled)
    on_path = shutil.which("psql")
    if on_path is None:
        raise PayguardError("psql not found: run `make setup` or install postgresql-client-15")
    return on_path


@app.command()
def logs(
    ctx: typer.Context,
    lines: Annotated[int, typer.Option("-n", "--lines", help="Print the last N lines.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing lines as they come.")
    ] = False,
) -> None:
    """Print the embedded cluster's server log (the last -n lines; --follow to keep going)."""
    if lines < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="-n")
    log = Cluster.for_project(state(ctx).project()).log_file
    if not log.is_file():
        raise PayguardError(f"no server log at {log}: the cluster has not run yet")
    with log.open(errors="replace") as handle:
        for line in deque(handle, maxlen=lines):  # reads to the end, keeps the last ones
            typer.echo(line, nl=False)
        if follow:
            try:
                _follow(handle, log)
            except KeyboardInterrupt:
                return


def _follow(handle: TextIO, log: Path) -> None:
    while True:
        line = handle.readline()
        if line:
            print(line, end="", flush=True)  # a pipe is block-buffered: flush each line
            continue
        if log.is_file() and log.stat().st_size < handle.tell():
            handle.seek(0)  # the log was rotated or truncated
        time.sleep(0.2)


@app.command()
def reset(
    ctx: typer.Context,
    database: Database = DATABASE,
    seed: Annotated[bool, typer.Option(help="Run supabase/seed.sql after the migrations.")] = True,
    as_json: Json = False,
) -> None:
    """Drop everything and redeploy: the whole cluster for the default database, else just
    that database."""
    check_database_name(database)
    report = reset_database(
        state(ctx).project(),
        database=database,
        seed=seed,
        on_step=None if as_json else print_step,
    )
    if as_json:
        print_json({**report.as_dict(), "database": database})
    else:
        out.print(f"reset: {len(report.applied)} migrations applied to {database}")


@app.command()
def diff(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("-f", "--file", help="The migration's name.")] = None,
) -> None:
    """Not generated: write the migration by hand (docs/schema-changes.md says why)."""
    raise PayguardError(NO_DIFF)
