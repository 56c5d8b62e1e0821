"""Connections: which database a command talks to, and how it connects."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from payguard.errors import PayguardError

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True)
class Target:
    """A database URL, and whether it is the project's embedded cluster."""

    url: str
    embedded: bool


def resolve_url(db_url: str | None) -> str | None:
    """`--db-url` if given, else $DATABASE_URL, else None (meaning: the embedded cluster)."""
    return db_url or os.environ.get("DATABASE_URL") or None


def connect(url: str, *, autocommit: bool = True) -> Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, application_name="payguard")
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise PayguardError(
            f"cannot connect to {redact(url)}: {reason}; check the URL, or start the embedded "
            "database with `payguard db start`"
        ) from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_superuser(conn: Connection) -> bool:
    row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    return bool(row and row[0])
