"""Snapshot of the objects that hold data or shape it: schemas, extensions, types, tables and
their columns, constraints, indexes, sequences, views, publications and the database's own
settings."""

from __future__ import annotations

from payguard.db import Connection
from payguard.schema.catalog.scope import Definitions, in_scope, lines, not_member, query, yes

RELATION_KINDS = {
    "r": "table",
    "p": "partitioned table",
    "f": "foreign table",
    "v": "view",
    "m": "materialized view",
}
PERSISTENCE = {"p": "permanent", "u": "unlogged", "t": "temporary"}
REPLICA_IDENTITY = {"d": "default", "n": "nothing", "f": "full", "i": "index"}
IDENTITY = {"a": "always", "d": "by default", "": None}
GENERATED = {"s": "stored", "": None}


def schemas(conn: Connection) -> Definitions:
    rows = query(
        conn,
        "select format('%%I', n.nspname), pg_get_userbyid(n.nspowner) "
        f"from pg_namespace as n where {in_scope('n.oid')}",
    )
    return {f"schema {name}": lines(("owner", owner)) for name, owner in rows}


def extensions(conn: Connection) -> Definitions:
    rows = query(
        conn,
        "select format('%%I', x.extname), x.extnamespace::regnamespace::text, x.extversion "
        "from pg_extension as x",
    )
    return {
        f"extension {name}": lines(("schema", schema), ("version", version))
        for name, schema, version in rows
    }


def types(conn: Connection) -> Definitions:
    """Enums, domains, composite types and ranges (not tables' row types or array types)."""
    rows = query(
        conn,
        f"""
        select format('%%I.%%I', n.nspname, t.typname), t.typtype, pg_get_userbyid(t.typowner),
          (select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder)
             from pg_enum as e where e.enumtypid = t.oid),
          case when t.typtype = 'd' then format_type(t.typbasetype, t.typtypmod) end,
          case when t.typtype = 'd' then t.typnotnull end,
          t.typdefault,
          case when t.typcollation <> coalesce(b.typcollation, 0)
            then (select format('%%I.%%I', cn.nspname, co.collname) from pg_collation as co
                  join pg_namespace as cn on cn.oid = co.collnamespace
                  where co.oid = t.typcollation) end,
          (select string_agg(format('%%I %%s', a.attname, format_type(a.atttypid, a.atttypmod)),
                             ', ' order by a.attnum)
             from pg_attribute as a
             where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped),
          (select format_type(r.rngsubtype, null) from pg_range as r where r.rngtypid = t.oid)
        from pg_type as t
        join pg_namespace as n on n.oid = t.typnamespace
        left join pg_type as b on b.oid = t.typbasetype
        where {in_scope("t.typnamespace")} and {not_member("pg_type", "t.oid")}
          and t.typtype in ('e', 'd', 'c', 'r', 'b')
          and (t.typrelid = 0 or (select c.relkind from pg_class as c where c.oid = t.typrelid)
               = 'c')
          and not exists (select from pg_type as o where o.typarray = t.oid)
        """,
    )
    kinds = {"e": "enum", "d": "domain", "c": "composite", "r": "range", "b": "base"}
    found: Definitions = {}
    for name, kind, owner, labels, base, notnull, default, collation, attributes, sub in rows:
        found[f"type {name}"] = lines(
            ("kind", kinds[kind]),
            ("owner", owner),
            ("labels", labels),
            ("base type", base),
            ("not null", None if notnull is None else yes(notnull)),
            ("default", default),
            ("collation", collation),
            ("attributes", attributes),
            ("subtype", sub),
        )
    return found


def tables(conn: Connection) -> Definitions:
    """Tables (with their columns' order), and each column as its own object."""
    rows = query(
        conn,
        f"""
        select c.oid, format('%%I.%%I', n.nspname, c.relname), c.relkind,
          pg_get_userbyid(c.relowner), c.relpersistence, c.relrowsecurity,
          c.relforcerowsecurity, c.reloptions::text, c.relreplident,
          case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end,
          pg_get_expr(c.relpartbound, c.oid),
          (select string_agg(i.inhparent::regclass::text, ', ' order by i.inhseqno)
             from pg_inherits as i where i.inhrelid = c.oid),
          (select string_agg(format('%%I', a.attname), ', ' order by a.attnum)
             from pg_attribute as a
             where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'f') and {in_scope("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        """,
    )
    found: Definitions = {}
    for (
        _,
        name,
        kind,
        owner,
        persistence,
        rls,
        force,
        options,
        replident,
        partkey,
        bound,
        parents,
        columns,
    ) in rows:
        found[f"table {name}"] = lines(
            ("kind", RELATION_KINDS[kind]),
            ("owner", owner),
            ("persistence", PERSISTENCE[persistence]),
            ("row level security", yes(rls)),
            ("forced row level security", yes(force)),
            ("options", options),
            ("replica identity", REPLICA_IDENTITY[replident]),
            ("partition key", partkey),
            ("partition of", bound),
            ("inherits", parents),
            ("columns", columns),
        )
    found.update(_columns(conn))
    return found


def _columns(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, c.relname, a.attname),
          format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull,
          a.attidentity, a.attgenerated,
          case when a.attcollation <> t.typcollation
            then (select format('%%I.%%I', cn.nspname, co.collname) from pg_collation as co
                  join pg_namespace as cn on cn.oid = co.collnamespace
                  where co.oid = a.attcollation) end,
          a.attoptions::text, nullif(a.attstattarget, -1), a.attstorage <> t.typstorage,
          a.attstorage
        from pg_attribute as a
        join pg_class as c on c.oid = a.attrelid
        join pg_namespace as n on n.oid = c.relnamespace
        join pg_type as t on t.oid = a.atttypid
        left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where c.relkind in ('r', 'p', 'f') and a.attnum > 0 and not a.attisdropped
          and {in_scope("c.relnamespace")} and {not_member("pg_class", "c.oid")}
        """,
    )
    found: Definitions = {}
    for (
        name,
        type_name,
        default,
        notnull,
        identity,
        generated,
        collation,
        options,
        statistics,
        own_storage,
        storage,
    ) in rows:
        found[f"column {name}"] = lines(
            ("type", type_name),
            ("default", None if generated else default),
            ("generated", f"always as ({default}) stored" if generated else None),
            ("not null", yes(notnull)),
            ("identity", IDENTITY.get(identity, identity)),
            ("collation", collation),
            ("options", options),
            ("statistics", None if statistics is None else str(statistics)),
            ("storage", storage if own_storage else None),
        )
    return found


def constraints(conn: Connection) -> Definitions:
    """Constraints of tables and of domains."""
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, coalesce(c.relname, t.typname), k.conname),
          pg_get_constraintdef(k.oid), k.condeferrable, k.condeferred, k.convalidated
        from pg_constraint as k
        join pg_namespace as n on n.oid = k.connamespace
        left join pg_class as c on c.oid = k.conrelid
        left join pg_type as t on t.oid = k.contypid
        where {in_scope("k.connamespace")}
          and (c.oid is null or {not_member("pg_class", "c.oid")})
          and (t.oid is null or {not_member("pg_type", "t.oid")})
        """,
    )
    return {
        f"constraint {name}": lines(
            ("definition", definition),
            ("deferrable", yes(deferrable)),
            ("initially deferred", yes(deferred)),
            ("validated", yes(validated)),
        )
        for name, definition, deferrable, deferred, validated in rows
    }


def indexes(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, c.relname, i.relname), pg_get_indexdef(i.oid),
          x.indisclustered, x.indisreplident
        from pg_index as x
        join pg_class as i on i.oid = x.indexrelid
        join pg_class as c on c.oid = x.indrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where {in_scope("c.relnamespace")} and {not_member("pg_class", "c.oid")}
        """,
    )
    return {
        f"index {name}": lines(
            ("definition", definition),
            ("clustered", yes(clustered) if clustered else None),
            ("replica identity", yes(replident) if replident else None),
        )
        for name, definition, clustered, replident in rows
    }


def sequences(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I', n.nspname, c.relname), pg_get_userbyid(c.relowner),
          format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
          s.seqcache, s.seqcycle, c.relpersistence,
          (select format('%%I.%%I.%%I', tn.nspname, t.relname, a.attname)
             from pg_depend as d
             join pg_class as t on t.oid = d.refobjid
             join pg_namespace as tn on tn.oid = t.relnamespace
             join pg_attribute as a on a.attrelid = t.oid and a.attnum = d.refobjsubid
             where d.classid = 'pg_class'::regclass and d.objid = c.oid
               and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i'))
        from pg_sequence as s
        join pg_class as c on c.oid = s.seqrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where {in_scope("c.relnamespace")} and {not_member("pg_class", "c.oid")}
        """,
    )
    found: Definitions = {}
    for name, owner, type_name, start, step, low, high, cache, cycle, persistence, owned in rows:
        found[f"sequence {name}"] = lines(
            ("owner", owner),
            ("type", type_name),
            ("start", start),
            ("increment", step),
            ("minimum", low),
            ("maximum", high),
            ("cache", cache),
            ("cycle", yes(cycle)),
            ("persistence", PERSISTENCE[persistence]),
            ("owned by", owned),
        )
    return found


def views(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I', n.nspname, c.relname), c.relkind, pg_get_userbyid(c.relowner),
          c.reloptions::text, pg_get_viewdef(c.oid)
        from pg_class as c
        join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind in ('v', 'm') and {in_scope("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        """,
    )
    return {
        f"{RELATION_KINDS[kind]} {name}": lines(("owner", owner), ("options", options))
        + f"\ndefinition:\n{definition}"
        for name, kind, owner, options, definition in rows
    }


def publications(conn: Connection) -> Definitions:
    rows = query(
        conn,
        """
        select format('%%I', p.pubname), pg_get_userbyid(p.pubowner), p.puballtables,
          p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot,
          (select string_agg(format('%%I.%%I', t.schemaname, t.tablename)
                             || coalesce(' (' || array_to_string(t.attnames, ', ') || ')', '')
                             || coalesce(' where ' || t.rowfilter, ''), ', '
                             order by t.schemaname, t.tablename)
             from pg_publication_tables as t where t.pubname = p.pubname)
        from pg_publication as p
        """,
    )
    return {
        f"publication {name}": lines(
            ("owner", owner),
            ("all tables", yes(every)),
            ("insert", yes(ins)),
            ("update", yes(upd)),
            ("delete", yes(dele)),
            ("truncate", yes(trunc)),
            ("via root", yes(root)),
            ("tables", tables_list),
        )
        for name, owner, every, ins, upd, dele, trunc, root, tables_list in rows
    }


def database(conn: Connection) -> Definitions:
    """The current database's owner and settings (its name differs from build to build)."""
    found: Definitions = {}
    row = conn.execute(
        "select pg_get_userbyid(d.datdba) from pg_database as d "
        "where d.datname = current_database()"
    ).fetchone()
    if row is not None:
        found["database"] = lines(("owner", row[0]))
    settings = conn.execute(
        "select coalesce(' for role ' || quote_ident(r.rolname), ''), unnest(s.setconfig) "
        "from pg_db_role_setting as s join pg_database as d on d.oid = s.setdatabase "
        "left join pg_roles as r on r.oid = s.setrole where d.datname = current_database()"
    ).fetchall()
    for role, setting in settings:
        key, _, value = str(setting).partition("=")
        found[f"database setting {key}{role}"] = lines(("value", value))
    return found
