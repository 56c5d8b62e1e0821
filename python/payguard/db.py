"""Connections: which database a command talks to, and how it connects.

Every connection payguard makes goes through `connect`, which turns libpq's failure into a
ConnectionFailedError that keeps libpq's reason ("Connection refused", "password authentication
failed for user ...").
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from payguard.errors import ConnectionFailedError, NotDeployedError, UsageError

Connection = psycopg.Connection[tuple[Any, ...]]

HISTORY_TABLE = "supabase_migrations.schema_migrations"


@dataclass(frozen=True)
class Target:
    """A database URL, and whether it is the project's embedded cluster."""

    url: str
    embedded: bool


def resolve_url(db_url: str | None) -> str | None:
    """`--db-url` if given, else $DATABASE_URL, else None (meaning: the embedded cluster)."""
    return db_url or os.environ.get("DATABASE_URL") or None


def check_url(url: str, *, source: str = "--db-url") -> str:
    """The URL, if libpq can parse it; else a UsageError naming where it came from."""
    try:
        conninfo_to_dict(url)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{source} is not a PostgreSQL URL ({reason}); give one like "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    return url


def connect(url: str, *, autocommit: bool = True, hint: str | None = None) -> Connection:
    """Connect to `url`; a failure is a ConnectionFailedError with libpq's reason and `hint` (by
    default: check the URL and that the server accepts connections)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name="payguard")
    except psycopg.OperationalError as exc:
        advice = hint or "check the URL and that the server runs and accepts connections"
        raise ConnectionFailedError(
            f"cannot connect to {redact(url)}: {libpq_reason(exc)}; {advice}"
        ) from None
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"{redact(url)} is not a PostgreSQL URL: {libpq_reason(exc)}") from None


def libpq_reason(exc: Exception) -> str:
    """libpq's reason for a failed connection, on one line: the text after the last
    "failed:" of the first attempt ("Connection refused", "password authentication failed
    for user ..."), without the severity prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    for line in lines:
        if "failed:" in line:
            reason = line.rsplit("failed:", 1)[1].strip()
            if reason:
                return re.sub(r"^(FATAL|ERROR):\s+", "", reason)
    return re.sub(r"^(connection failed:\s*)?(FATAL|ERROR):\s+", "", lines[0])


def require_deployed(conn: Connection, url: str) -> None:
    """Raise NotDeployedError unless payguard's migrations were applied to this database."""
    row = conn.execute(
        "select to_regclass(%s) is not null and exists (select from pg_namespace "
        "where nspname = 'private')",
        (HISTORY_TABLE,),
    ).fetchone()
    if not (row and row[0]):
        raise NotDeployedError(
            f"{redact(url)} is not deployed (no payguard migrations applied): "
            "run `payguard deploy` against it first"
        )


def redact(url: str) -> str:
    """The URL (or key=value conninfo) without its password, for messages."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_superuser(conn: Connection) -> bool:
    row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    return bool(row and row[0])
