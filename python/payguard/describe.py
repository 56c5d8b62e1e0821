"""What a deployed database holds: schemas, tables, policies and roles, for people to read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from payguard.db import connect

APP_SCHEMAS = ("public", "private", "auth", "extensions", "graphql_public")
SUPABASE_ROLES = (
    "postgres",
    "supabase_admin",
    "supabase_auth_admin",
    "authenticator",
    "anon",
    "authenticated",
    "service_role",
)


@dataclass
class Description:
    schemas: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    migrations: list[str] = field(default_factory=list)


def describe(url: str) -> Description:
    found = Description()
    with connect(url) as conn:
        cur = conn.cursor()
        cur.execute(
            "select n.nspname, pg_get_userbyid(n.nspowner), "
            "(select count(*) from pg_class c where c.relnamespace = n.oid and c.relkind in "
            "('r', 'p', 'v', 'm')) from pg_namespace n where n.nspname = any(%s) "
            "order by n.nspname",
            (list(APP_SCHEMAS),),
        )
        found.schemas = [{"schema": s, "owner": o, "relations": int(n)} for s, o, n in cur]
        cur.execute(
            "select n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "pg_get_userbyid(c.relowner), coalesce(c.reltuples, 0)::bigint "
            "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'p') and n.nspname = any(%s) "
            "order by n.nspname, c.relname",
            (list(APP_SCHEMAS),),
        )
        found.tables = [
            {"schema": s, "table": t, "rls": bool(r), "force_rls": bool(f), "owner": o}
            for s, t, r, f, o, _ in cur
        ]
        cur.execute(
            "select schemaname, tablename, policyname, cmd, roles::text[], permissive "
            "from pg_policies where schemaname = any(%s) order by 1, 2, 3",
            (list(APP_SCHEMAS),),
        )
        found.policies = [
            {"schema": s, "table": t, "policy": p, "command": c, "roles": list(r), "kind": k}
            for s, t, p, c, r, k in cur
        ]
        cur.execute(
            "select r.rolname, r.rolsuper, r.rolcanlogin, r.rolinherit, r.rolbypassrls, "
            "coalesce(array(select g.rolname from pg_auth_members m join pg_roles g "
            "on g.oid = m.roleid where m.member = r.oid order by 1), '{}') "
            "from pg_roles r where r.rolname = any(%s) or exists (select from pg_auth_members m "
            "join pg_roles a on a.oid = m.member where m.roleid = r.oid and "
            "a.rolname = 'authenticator') order by r.rolname",
            (list(SUPABASE_ROLES),),
        )
        found.roles = [
            {
                "role": name,
                "superuser": bool(su),
                "login": bool(login),
                "inherit": bool(inherit),
                "bypassrls": bool(bypass),
                "member_of": list(member_of),
            }
            for name, su, login, inherit, bypass, member_of in cur
        ]
        cur.execute("select to_regclass('supabase_migrations.schema_migrations') is not null")
        row = cur.fetchone()
        if row and row[0]:
            cur.execute(
                "select version || '_' || coalesce(name, '') "
                "from supabase_migrations.schema_migrations order by version"
            )
            found.migrations = [str(v) for (v,) in cur]
    return found
