"""Migration files and the Supabase CLI's migration history table.

payguard records applied migrations in `supabase_migrations.schema_migrations` with the same
DDL, columns and values as the Supabase CLI, so either tool sees what the other applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from payguard.db import Connection
from payguard.errors import PayguardError
from payguard.sql_split import Statement, split_statements

FILE_NAME = re.compile(r"^(?P<version>[0-9]{14})_(?P<name>[a-z0-9_]+)\.sql$")
# Statements that would end or nest the transaction each migration runs in, or change the
# role it runs as (migrations run as `postgres`, as on Supabase).
TRANSACTION_CONTROL = re.compile(
    r"^(begin|commit|rollback|abort|end|start\s+transaction)\b(?!\s+atomic)", re.IGNORECASE
)
ROLE_CHANGE = re.compile(
    r"^(set|reset)\s+((session|local)\s+)?(role|session\s+authorization)\b|^reset\s+all\b",
    re.IGNORECASE,
)
LEADING_COMMENTS = re.compile(r"^(\s*(--[^\n]*(\n|$)|/\*.*?\*/))*\s*", re.DOTALL)

# The Supabase CLI's own statements (pkg/migration/history.go), run in this order.
HISTORY_DDL = (
    "create schema if not exists supabase_migrations",
    "create table if not exists supabase_migrations.schema_migrations "
    "(version text not null primary key)",
    "alter table supabase_migrations.schema_migrations add column if not exists statements text[]",
    "alter table supabase_migrations.schema_migrations add column if not exists name text",
)
SEED_DDL = (
    "create schema if not exists supabase_migrations",
    "create table if not exists supabase_migrations.seed_files "
    "(path text not null primary key, hash text not null)",
)


@dataclass(frozen=True)
class MigrationFile:
    version: str
    name: str
    path: Path
    statements: list[Statement]

    @property
    def texts(self) -> list[str]:
        return [s.text for s in self.statements]

    @property
    def file_name(self) -> str:
        return self.path.name

    def forbidden_statements(self) -> list[tuple[Statement, str]]:
        """Statements a migration may not hold, each with the reason."""
        found: list[tuple[Statement, str]] = []
        for statement in self.statements:
            text = LEADING_COMMENTS.sub("", statement.text, count=1)
            if TRANSACTION_CONTROL.match(text):
                found.append((statement, "each migration runs in a transaction of its own"))
            elif ROLE_CHANGE.match(text):
                found.append((statement, "migrations run as postgres and may not change role"))
        return found


@dataclass(frozen=True)
class AppliedMigration:
    version: str
    name: str
    statements: list[str] | None


def read_sql(path: Path) -> str:
    """A SQL file's text exactly as stored: no newline translation, so that CRLF files split
    into the same statements as the Supabase CLI's."""
    return path.read_bytes().decode()


def load_migrations(folder: Path) -> list[MigrationFile]:
    """Every migration in `folder`, in version order. A misnamed .sql file is an error."""
    if not folder.is_dir():
        return []
    found: dict[str, MigrationFile] = {}
    for path in sorted(folder.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise PayguardError(
                f"{path.name}: a migration file must be named <14-digit UTC timestamp>_<name>.sql "
                "with a lowercase snake_case name; rename it"
            )
        version = match["version"]
        if version in found:
            raise PayguardError(
                f"{path.name} and {found[version].file_name} share version {version}; "
                "give one of them a later timestamp"
            )
        found[version] = MigrationFile(
            version=version,
            name=match["name"],
            path=path,
            statements=split_statements(read_sql(path)),
        )
    return [found[v] for v in sorted(found)]


def history_exists(conn: Connection) -> bool:
    row = conn.execute(
        "select to_regclass('supabase_migrations.schema_migrations') is not null"
    ).fetchone()
    return bool(row and row[0])


def read_history(conn: Connection) -> list[AppliedMigration]:
    """The applied migrations, in version order; empty when the table does not exist yet."""
    if not history_exists(conn):
        return []
    rows = conn.execute(
        "select version, coalesce(name, ''), statements "
        "from supabase_migrations.schema_migrations order by version"
    ).fetchall()
    return [
        AppliedMigration(
            version=str(version),
            name=str(name),
            statements=None if statements is None else [str(s) for s in statements],
        )
        for version, name, statements in rows
    ]


def ensure_history_table(conn: Connection) -> None:
    for statement in HISTORY_DDL:
        conn.execute(statement)


def record_applied(conn: Connection, migration: MigrationFile) -> None:
    conn.execute(
        "insert into supabase_migrations.schema_migrations (version, name, statements) "
        "values (%s, %s, %s)",
        (migration.version, migration.name, migration.texts),
    )


def ensure_seed_table(conn: Connection) -> None:
    for statement in SEED_DDL:
        conn.execute(statement)


def seed_hash(conn: Connection, path: str) -> str | None:
    exists = conn.execute(
        "select to_regclass('supabase_migrations.seed_files') is not null"
    ).fetchone()
    if not (exists and exists[0]):
        return None
    row = conn.execute(
        "select hash from supabase_migrations.seed_files where path = %s", (path,)
    ).fetchone()
    return None if row is None else str(row[0])


def record_seed(conn: Connection, path: str, digest: str) -> None:
    conn.execute(
        "insert into supabase_migrations.seed_files (path, hash) values (%s, %s) "
        "on conflict (path) do update set hash = excluded.hash",
        (path, digest),
    )
