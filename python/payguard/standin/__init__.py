"""The local Supabase stand-in: the roles, schemas, auth tables and functions, extensions and
settings that a Supabase project has and a plain PostgreSQL does not.

It is applied only to a database without an `auth` schema, never to a real Supabase project,
and only by a superuser, as Supabase's own `supabase_admin` sets a project up.
"""

from __future__ import annotations

from importlib import resources

from payguard.db import Connection, connect, is_superuser
from payguard.errors import DatabaseError
from payguard.roles import take_cluster_roles


def standin_files() -> list[tuple[str, str]]:
    """(file name, SQL) of each stand-in file, in the order they apply."""
    folder = resources.files(__name__)
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text()) for name in names]


def needs_standin(conn: Connection) -> bool:
    """True when the database has no Supabase `auth` schema."""
    row = conn.execute("select to_regnamespace('auth') is null").fetchone()
    return bool(row and row[0])


def apply_standin(conn: Connection) -> None:
    """Apply every stand-in file, in one transaction."""
    if not is_superuser(conn):
        raise DatabaseError(
            "this database has no Supabase `auth` schema, and installing the local stand-in "
            "needs a superuser; connect as one (the embedded cluster's `supabase_admin`), or "
            "deploy to a Supabase project"
        )
    with conn.transaction():
        take_cluster_roles(conn)
        for name, text in standin_files():
            try:
                conn.execute(text)
            except Exception as exc:
                raise DatabaseError(f"the Supabase stand-in failed in {name}: {exc}") from None


def install(url: str) -> bool:
    """Install only the stand-in (what deploy installs before the migrations) into the
    database at `url`, so that `supabase db push --db-url` can apply the migrations there.
    Returns False, changing nothing, when the database already has an `auth` schema."""
    with connect(url) as conn:
        if not needs_standin(conn):
            return False
        apply_standin(conn)
    return True
