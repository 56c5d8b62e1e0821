"""Snapshot of the rarer kinds of object a migration can create: extended statistics, casts,
operators and their classes and families, collations, conversions, text search objects,
foreign data wrappers, servers and user mappings, transforms, access methods, languages.
Each is compared by name and owner (statistics by their definition too)."""

from __future__ import annotations

from payguard.db import Connection
from payguard.schema.catalog.scope import EXCLUDED_SCHEMAS, Definitions

FIRST_NORMAL_OID = 16384  # objects below it are PostgreSQL's own

# catalog, its namespace column (None: not in a schema), its owner column (None: no owner)
CATALOGS = (
    ("pg_statistic_ext", "stxnamespace", "stxowner"),
    ("pg_cast", None, None),
    ("pg_operator", "oprnamespace", "oprowner"),
    ("pg_opclass", "opcnamespace", "opcowner"),
    ("pg_opfamily", "opfnamespace", "opfowner"),
    ("pg_collation", "collnamespace", "collowner"),
    ("pg_conversion", "connamespace", "conowner"),
    ("pg_ts_config", "cfgnamespace", "cfgowner"),
    ("pg_ts_dict", "dictnamespace", "dictowner"),
    ("pg_ts_parser", "prsnamespace", None),
    ("pg_ts_template", "tmplnamespace", None),
    ("pg_foreign_data_wrapper", None, "fdwowner"),
    ("pg_foreign_server", None, "srvowner"),
    ("pg_user_mapping", None, None),
    ("pg_transform", None, None),
    ("pg_am", None, None),
    ("pg_language", None, "lanowner"),
)


def others(conn: Connection) -> Definitions:
    found: Definitions = {}
    for catalog, namespace, owner in CATALOGS:
        owner_sql = f"pg_get_userbyid(x.{owner})" if owner else "null"
        schema_sql = f"x.{namespace}::regnamespace::text" if namespace else "null"
        definition = "pg_get_statisticsobjdef(x.oid)" if catalog == "pg_statistic_ext" else "null"
        rows = conn.execute(
            f"""
            select o.type, o.identity, {schema_sql}, {owner_sql}, {definition}
            from {catalog} as x
            cross join lateral pg_identify_object('{catalog}'::regclass, x.oid, 0) as o
            where x.oid >= %(first)s and not exists (
              select from pg_depend as e where e.classid = '{catalog}'::regclass
              and e.objid = x.oid and e.deptype = 'e')
            """,
            {"first": FIRST_NORMAL_OID},
        ).fetchall()
        for kind, identity, schema, owner_name, text in rows:
            if schema is not None and (schema in EXCLUDED_SCHEMAS or schema.startswith("pg_")):
                continue
            lines = [f"owner: {owner_name}"] if owner_name is not None else []
            if text is not None:
                lines.append(f"definition: {text}")
            found[f"{kind} {identity}"] = "\n".join(lines)
    return found
