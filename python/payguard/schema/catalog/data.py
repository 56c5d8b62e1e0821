"""Snapshot of the rows that a deploy leaves in the tables (settings, fee schedules, rate
limit rules): per table, its row count, a digest and the rows themselves, as JSON, sorted.

Values filled at deploy time differ from one build to the next and are left out: a column
whose default calls a function that is not immutable (now(), gen_random_uuid(),
gen_random_bytes(), nextval()) is not compared. The rows of the audit trail are history, not
definition (each records when and in which transaction a statement ran), and are not compared.
"""

from __future__ import annotations

import hashlib
import re

from psycopg import sql

from payguard.db import Connection
from payguard.schema.catalog.scope import Definitions, in_scope, not_member, query

HISTORY_TABLES = frozenset({"public.payment_audit_logs"})
SHOWN_ROWS = 200
_FUNCTION_IDS = re.compile(r":(?:funcid|opfuncid) (\d+)")


def table_data(conn: Connection) -> Definitions:
    tables = query(
        conn,
        f"""
        select c.oid, n.nspname, c.relname, format('%%I.%%I', n.nspname, c.relname)
        from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and {in_scope("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        """,
    )
    volatile = _deploy_time_columns(conn)
    found: Definitions = {}
    for oid, schema, table, name in tables:
        if name in HISTORY_TABLES:
            continue
        relation = sql.Identifier(schema, table)
        row = conn.execute(
            sql.SQL("select exists (select from only {})").format(relation)
        ).fetchone()
        if not (row and row[0]):
            continue
        left_out = sorted(volatile.get(oid, []))
        rows = [
            str(r[0])
            for r in conn.execute(
                sql.SQL(
                    "select j.r from (select (to_jsonb(t) - {}::text[])::text as r "
                    'from only {} as t) as j order by j.r collate "C"'
                ).format(sql.Literal(left_out), relation)
            )
        ]
        digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        head = f"rows: {len(rows)}\nsha256: {digest}"
        if left_out:
            head += f"\nnot compared (filled at deploy time): {', '.join(left_out)}"
        shown = rows[:SHOWN_ROWS]
        more = f"\n… and {len(rows) - SHOWN_ROWS} more rows" if len(rows) > SHOWN_ROWS else ""
        found[f"data {name}"] = head + "\n" + "\n".join(shown) + more
    return found


def _deploy_time_columns(conn: Connection) -> dict[int, list[str]]:
    """Per table oid, its columns whose default is not immutable (as the defaults' expression
    trees name their functions; SQL value functions such as CURRENT_TIMESTAMP count too)."""
    defaults = conn.execute(
        "select d.adrelid, a.attname, d.adbin::text from pg_attrdef as d "
        "join pg_attribute as a on a.attrelid = d.adrelid and a.attnum = d.adnum"
    ).fetchall()
    ids = {int(m) for _, _, tree in defaults for m in _FUNCTION_IDS.findall(str(tree))}
    unstable = {
        int(oid)
        for (oid,) in conn.execute(
            "select oid from pg_proc where oid = any(%s) and provolatile <> 'i'", (list(ids),)
        )
    }
    found: dict[int, list[str]] = {}
    for relid, column, tree in defaults:
        text = str(tree)
        calls = {int(m) for m in _FUNCTION_IDS.findall(text)}
        if calls & unstable or "{SQLVALUEFUNCTION" in text or "{NEXTVALUEEXPR" in text:
            found.setdefault(int(relid), []).append(str(column))
    return found
