"""Build a database from the schema files, as a deploy builds one from the migrations.

The Supabase stand-in is installed first, exactly as `payguard deploy` installs it before the
migrations; then every schema file runs, in order, as `postgres`, all in one transaction.
Nothing is recorded in supabase_migrations: the files are a definition, not a history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from payguard.databases import recreate_database
from payguard.db import Connection, connect, is_superuser
from payguard.deploy import MIGRATION_ROLE
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.roles import take_cluster_roles
from payguard.schema.files import SchemaFile, load_schema_files
from payguard.schema.server import database_url
from payguard.sql_split import Statement
from payguard.standin import apply_standin, needs_standin


class SchemaFileError(PayguardError):
    """A schema file raised an error; nothing of the build was kept."""


@dataclass
class BuildReport:
    """What a build applied: each file's name and the milliseconds it took."""

    standin: bool = False
    files: list[tuple[str, float]] = field(default_factory=list)


def build_database(server_url: str, name: str, project: Project) -> BuildReport:
    """Create database `name` (dropping any of that name) on the server of `server_url` (a
    superuser's URL) and build it from the project's schema files."""
    files = load_schema_files(project)
    recreate_database(server_url, name)
    return apply_schema_files(database_url(server_url, name), files)


def apply_schema_files(url: str, files: list[SchemaFile]) -> BuildReport:
    """Install the stand-in where it is missing, then run `files` in one transaction."""
    problems = [
        f"{f.name}:{statement.line}: {reason}; remove it"
        for f in files
        for statement, reason in f.forbidden_statements()
    ]
    if problems:
        raise SchemaFileError("the schema files cannot be applied:\n" + "\n".join(problems))
    report = BuildReport()
    with connect(url) as conn:
        if needs_standin(conn):
            apply_standin(conn)
            report.standin = True
        run_as = _schema_role(conn)
        try:
            with conn.transaction():
                # The schema files create the cluster's roles, as the migrations do.
                take_cluster_roles(conn)
                if run_as is not None:
                    conn.execute(
                        sql.SQL("set local session authorization {}").format(sql.Identifier(run_as))
                    )
                for schema_file in files:
                    started = time.perf_counter()
                    for statement in schema_file.statements:
                        _run(conn, schema_file, statement)
                    took = round((time.perf_counter() - started) * 1000, 1)
                    report.files.append((schema_file.name, took))
        except psycopg.Error as exc:
            raise PayguardError(f"building from the schema files failed: {exc}") from None
    return report


def _schema_role(conn: Connection) -> str | None:
    """`postgres` when connected as another superuser, as a deploy runs its migrations."""
    row = conn.execute(
        "select current_user <> %s and exists (select from pg_roles where rolname = %s)",
        (MIGRATION_ROLE, MIGRATION_ROLE),
    ).fetchone()
    if row and row[0] and is_superuser(conn):
        return MIGRATION_ROLE
    return None


def _run(conn: Connection, schema_file: SchemaFile, statement: Statement) -> None:
    try:
        conn.execute(statement.text)
    except psycopg.Error as exc:
        line = statement.line_of(int(exc.diag.statement_position or 0))
        message = (exc.diag.message_primary or str(exc)).strip()
        raise SchemaFileError(
            f"{schema_file.name}:{line}: {message} (SQLSTATE {exc.sqlstate or '?'}); "
            "nothing of the schema files was applied"
        ) from None
