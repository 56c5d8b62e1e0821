"""What a snapshot covers: every schema but PostgreSQL's own, the test helpers' `tests` and the
migration history's `supabase_migrations`; objects that belong to an extension are covered by
the extension's version (their privileges are still compared)."""

from __future__ import annotations

from typing import Any

from payguard.db import Connection

EXCLUDED_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast", "tests", "supabase_migrations")

# The schemas in scope, as a SQL condition on a namespace oid column (`{oid}`).
IN_SCOPE = (
    "{oid} in (select n.oid from pg_catalog.pg_namespace as n "
    "where n.nspname <> all(%(excluded)s) and n.nspname !~ '^pg_(toast_)?temp_')"
)

# Not a member of an extension, as a SQL condition on a catalog (`{catalog}`) and an oid.
NOT_EXTENSION_MEMBER = (
    "not exists (select from pg_catalog.pg_depend as e where e.classid = "
    "'{catalog}'::regclass and e.objid = {oid} and e.deptype = 'e')"
)

# Roles the Supabase stand-in creates (or a Supabase project has): they are compared only as
# the other side of a payguard role's memberships.
SUPABASE_ROLES = (
    "postgres",
    "supabase_admin",
    "supabase_auth_admin",
    "authenticator",
    "anon",
    "authenticated",
    "service_role",
)

Rows = list[tuple[Any, ...]]
Definitions = dict[str, str]


def in_scope(oid: str) -> str:
    return IN_SCOPE.format(oid=oid)


def not_member(catalog: str, oid: str) -> str:
    return NOT_EXTENSION_MEMBER.format(catalog=catalog, oid=oid)


def query(conn: Connection, text: str, **params: Any) -> Rows:
    """Run a catalog query; `%(excluded)s` is always bound to the excluded schemas."""
    return conn.execute(text, {"excluded": list(EXCLUDED_SCHEMAS), **params}).fetchall()


def yes(flag: object) -> str:
    return "yes" if flag else "no"


def lines(*pairs: tuple[str, object]) -> str:
    """A definition as `name: value` lines, leaving out values that are None."""
    return "\n".join(f"{name}: {value}" for name, value in pairs if value is not None)
