"""Creating, cloning and dropping databases in a cluster, as its superuser."""

from __future__ import annotations

import re

from psycopg import sql

from payguard.cluster import APP_ROLE
from payguard.db import Connection, connect
from payguard.errors import UsageError

# PostgreSQL's limit on identifiers (NAMEDATALEN - 1 bytes); longer names are truncated.
MAX_NAME_BYTES = 63
# A name PostgreSQL takes as it is, unquoted: lower case letters, digits, _ and $, not
# starting with a digit or $.
PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")

# Settings that take a list of quoted elements (PostgreSQL's GUC_LIST_QUOTE ones).
LIST_SETTINGS = frozenset(
    {
        "search_path",
        "temp_tablespaces",
        "session_preload_libraries",
        "local_preload_libraries",
        "shared_preload_libraries",
    }
)


def check_database_name(name: str) -> str:
    """The name, if PostgreSQL takes it unquoted and whole; else a UsageError (exit 2)."""
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise UsageError(
            f"database name {name!r} is {size} bytes long; PostgreSQL keeps {MAX_NAME_BYTES}: "
            "choose a shorter one"
        )
    if not PLAIN_NAME.fullmatch(name):
        raise UsageError(
            f"database name {name!r} would need quoting: use lower case letters, digits and _, "
            "starting with a letter or _"
        )
    return name


def _check_not_keyword(conn: Connection, name: str) -> None:
    row = conn.execute("select quote_ident(%s) = %s", (name, name)).fetchone()
    if not (row and row[0]):
        raise UsageError(
            f"database name {name!r} is an SQL keyword and would need quoting: choose another"
        )


def recreate_database(admin_url: str, name: str, *, template: str | None = None) -> None:
    """Drop `name` if it exists (disconnecting its sessions), then create it, owned by
    `postgres`, empty or as a copy of `template`.

    Per-database settings (`alter database … set`) and privileges (`grant … on database`)
    are not copied by CREATE DATABASE, so the template's are applied to the copy here.
    """
    check_database_name(name)
    with connect(admin_url) as conn:
        _check_not_keyword(conn, name)
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        if template is None:
            conn.execute(
                sql.SQL("create database {} owner {}").format(
                    sql.Identifier(name), sql.Identifier(APP_ROLE)
                )
            )
            return
        conn.execute(
            sql.SQL("create database {} template {} owner {}").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(APP_ROLE)
            )
        )
        settings = conn.execute(
            "select unnest(s.setconfig) from pg_db_role_setting as s "
            "join pg_database as d on d.oid = s.setdatabase "
            "where d.datname = %s and s.setrole = 0",
            (template,),
        ).fetchall()
        for (setting,) in settings:
            key, _, value = str(setting).partition("=")
            # A list setting is stored with its elements already quoted, ready to reuse as
            # SQL (as pg_dump does); any other value is one string.
            value_sql = sql.SQL(value) if key in LIST_SETTINGS else sql.Literal(value)
            conn.execute(
                sql.SQL("alter database {} set {} = {}").format(
                    sql.Identifier(name), sql.Identifier(*key.split(".")), value_sql
                )
            )
        privileges = conn.execute(
            "select coalesce(g.rolname, 'public'), a.privilege_type, a.is_grantable "
            "from pg_database as d cross join lateral aclexplode(d.datacl) as a "
            "left join pg_roles as g on g.oid = a.grantee "
            "where d.datname = %s and d.datacl is not null",
            (template,),
        ).fetchall()
        if privileges:
            # The copy starts with the default privileges (PUBLIC may connect and create
            # temporary objects); the template's replace them.
            conn.execute(
                sql.SQL("revoke all on database {} from public").format(sql.Identifier(name))
            )
            for grantee, privilege, grantable in privileges:
                conn.execute(
                    sql.SQL("grant {} on database {} to {}{}").format(
                        sql.SQL(str(privilege)),
                        sql.Identifier(name),
                        sql.SQL("public") if grantee == "public" else sql.Identifier(grantee),
                        sql.SQL(" with grant option") if grantable else sql.SQL(""),
                    )
                )


def drop_database(admin_url: str, name: str) -> None:
    with connect(admin_url) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
