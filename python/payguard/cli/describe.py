"""`payguard describe`: what a deployed database holds."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from payguard.cli.common import DbUrl, Json, out, print_json, state, target
from payguard.describe import describe as describe_database


def describe(
    ctx: typer.Context,
    db_url: DbUrl = None,
    as_json: Json = False,
) -> None:
    """Show the schemas, tables (with their RLS), policies, roles, functions, triggers and
    applied migrations."""
    found = describe_database(target(state(ctx).project(), db_url).url)
    if as_json:
        print_json(asdict(found))
        return
    schemas = Table("schema", "owner", "relations", title="Schemas")
    for s in found.schemas:
        schemas.add_row(s["schema"], s["owner"], str(s["relations"]))
    tables = Table("table", "owner", "RLS", "forced", title="Tables")
    for t in found.tables:
        tables.add_row(
            f"{t['schema']}.{t['table']}", t["owner"], _yes(t["rls"]), _yes(t["force_rls"])
        )
    policies = Table("table", "policy", "command", "to", "kind", title="Policies")
    for p in found.policies:
        policies.add_row(
            f"{p['schema']}.{p['table']}",
            p["policy"],
            p["command"],
            ", ".join(p["roles"]),
            p["kind"],
        )
    roles = Table("role", "login", "inherit", "bypass RLS", "superuser", "member of", title="Roles")
    for r in found.roles:
        roles.add_row(
            r["role"],
            _yes(r["login"]),
            _yes(r["inherit"]),
            _yes(r["bypassrls"]),
            _yes(r["superuser"]),
            ", ".join(r["member_of"]),
        )
    functions = Table("function", "kind", "language", "security definer", title="Functions")
    for f in found.functions:
        functions.add_row(
            f"{f['schema']}.{f['name']}({f['args']})",
            f["kind"],
            f["language"],
            _yes(f["security_definer"]),
        )
    triggers = Table("table", "trigger", "when", "function", "enabled", title="Triggers")
    for t in found.triggers:
        triggers.add_row(
            f"{t['schema']}.{t['table']}",
            t["trigger"],
            f"{t['timing']} {' or '.join(t['events'])}, for each {t['level']}",
            t["function"],
            _yes(t["enabled"]),
        )
    for table in (schemas, tables, policies, roles, functions, triggers):
        out.print(table)
    out.print(f"Applied migrations: {len(found.migrations)}")
    for name in found.migrations:
        out.print(f"  {name}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
