"""Snapshot of the comments on every object in scope: schemas, tables, columns, functions,
types, constraints, triggers, policies, indexes, views, sequences, event triggers and
publications. (Comments on roles are part of each role's definition.)"""

from __future__ import annotations

from payguard.db import Connection
from payguard.schema.catalog.scope import EXCLUDED_SCHEMAS, Definitions

FIRST_NORMAL_OID = 16384  # objects below it are PostgreSQL's own


def comments(conn: Connection) -> Definitions:
    rows = conn.execute(
        """
        select o.type, o.schema, o.identity, d.description,
          exists (select from pg_depend as e where e.classid = d.classoid
                  and e.objid = d.objoid and e.deptype = 'e')
        from pg_description as d
        cross join lateral pg_identify_object(d.classoid, d.objoid, d.objsubid) as o
        where d.objoid >= %(first)s
        """,
        {"first": FIRST_NORMAL_OID},
    ).fetchall()
    found: Definitions = {}
    for kind, schema, identity, description, extension_member in rows:
        if extension_member or kind == "extension":
            continue
        owner_schema = identity if kind == "schema" else schema
        if owner_schema in EXCLUDED_SCHEMAS or str(owner_schema or "").startswith("pg_"):
            continue
        found[f"comment on {kind} {identity}"] = str(description)
    return found
