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


# pg_trigger.tgtype bits (PostgreSQL's include/catalog/pg_trigger.h)
TRIGGER_ROW = 1 << 0
TRIGGER_BEFORE = 1 << 1
TRIGGER_INSTEAD = 1 << 6
TRIGGER_EVENTS = ((1 << 2, "insert"), (1 << 4, "update"), (1 << 3, "delete"), (1 << 5, "truncate"))


def _timing(tgtype: int) -> str:
    if tgtype & TRIGGER_INSTEAD:
        return "instead of"
    return "before" if tgtype & TRIGGER_BEFORE else "after"


def _events(tgtype: int) -> list[str]:
    return [name for bit, name in TRIGGER_EVENTS if tgtype & bit]


@dataclass
class Description:
    schemas: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)
    functions: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
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
        # Functions and triggers in the app schemas, not those of extensions (pgTAP's hundreds).
        cur.execute(
            "select n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), "
            "case p.prokind when 'p' then 'procedure' when 'a' then 'aggregate' "
            "else 'function' end, l.lanname, p.prosecdef "
            "from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
            "join pg_language l on l.oid = p.prolang "
            "where n.nspname = any(%s) and not exists (select from pg_depend d "
            "where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e') "
            "order by 1, 2, 3",
            (list(APP_SCHEMAS),),
        )
        found.functions = [
            {
                "schema": schema,
                "name": name,
                "args": args,
                "kind": kind,
                "language": language,
                "security_definer": bool(definer),
            }
            for schema, name, args, kind, language, definer in cur
        ]
        cur.execute(
            "select n.nspname, c.relname, t.tgname, t.tgtype, "
            "t.tgfoid::regprocedure::text, t.tgenabled "
            "from pg_trigger t join pg_class c on c.oid = t.tgrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "where not t.tgisinternal and n.nspname = any(%s) order by 1, 2, 3",
            (list(APP_SCHEMAS),),
        )
        found.triggers = [
            {
                "schema": schema,
                "table": table,
                "trigger": name,
                "timing": _timing(int(tgtype)),
                "events": _events(int(tgtype)),
                "level": "row" if int(tgtype) & TRIGGER_ROW else "statement",
                "function": function,
                "enabled": str(enabled) != "D",
            }
            for schema, table, name, tgtype, function, enabled in cur
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
