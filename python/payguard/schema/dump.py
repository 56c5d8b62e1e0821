"""`payguard schema`: the current schema of a deployed database, for people to read, ordered
by domain: for each schema file in order, the tables, views and types it creates, and the
functions it creates, each followed by the triggers and the policies that call it. Objects
that no schema file creates come last, under "unassigned".

Only payguard's own schemas are shown: not PostgreSQL's, not the Supabase stand-in's (auth,
extensions, graphql_public), not the test helpers, not extensions' objects.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from payguard.db import Connection, connect
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.schema.catalog.code import COMMANDS, VOLATILITY
from payguard.schema.catalog.scope import in_scope, not_member, query
from payguard.schema.domains import Created, domain_map
from payguard.schema.files import load_schema_files

UNASSIGNED = "unassigned"
SUPABASE_SCHEMAS = ("auth", "extensions", "graphql_public", "storage", "realtime", "vault")


@dataclass
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None


@dataclass
class Table:
    schema: str
    name: str
    kind: str  # table | view | materialized view
    rls: bool
    force_rls: bool
    columns: list[Column] = field(default_factory=list)
    constraints: list[dict[str, str]] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    policies: list[dict[str, str]] = field(default_factory=list)
    definition: str | None = None  # a view's query


@dataclass
class Caller:
    """A trigger or policy that calls a function."""

    kind: str  # trigger | policy
    table: str
    name: str
    detail: str


@dataclass
class Function:
    schema: str
    name: str
    signature: str
    returns: str | None
    kind: str  # function | procedure | aggregate
    language: str
    security_definer: bool
    volatility: str
    search_path: str | None
    body: str
    callers: list[Caller] = field(default_factory=list)


@dataclass
class TypeInfo:
    schema: str
    name: str
    kind: str
    detail: str


@dataclass
class Domain:
    name: str
    file: str | None
    tables: list[Table] = field(default_factory=list)
    types: list[TypeInfo] = field(default_factory=list)
    functions: list[Function] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dump(url: str, project: Project, *, domain: str | None = None) -> list[Domain]:
    """The database's schema at `url`, by domain (only `domain`, if given)."""
    files = load_schema_files(project, required=False)
    owners = domain_map(files)
    sections = {f.domain: Domain(f.domain, f.name) for f in files}
    sections[UNASSIGNED] = Domain(UNASSIGNED, None)
    if domain is not None and domain not in sections:
        known = ", ".join(sections)
        raise PayguardError(f"no domain {domain!r}; the domains are: {known}")
    with connect(url) as conn, conn.transaction():
        conn.execute("set local search_path = ''")  # every name printed schema-qualified
        tables = _tables(conn)
        types = _types(conn)
        functions = _functions(conn)

    def place(created: Created) -> Domain:
        return sections[owners.get(created, UNASSIGNED)]

    for table in tables:
        kind = "table" if table.kind == "table" else "view"
        place(Created(kind, (table.schema, table.name))).tables.append(table)
    for type_info in types:
        place(Created("type", (type_info.schema, type_info.name))).types.append(type_info)
    for function in functions:
        place(Created("function", (function.schema, function.name))).functions.append(function)
    return [s for s in sections.values() if domain is None or s.name == domain]


def _schemas_sql(column: str) -> str:
    return f"{in_scope(column)} and {column}::regnamespace::text <> all(%(supabase)s)"


def _run(conn: Connection, text: str) -> list[tuple[Any, ...]]:
    return query(conn, text, supabase=list(SUPABASE_SCHEMAS))


def _tables(conn: Connection) -> list[Table]:
    found: dict[int, Table] = {}
    kinds = {"r": "table", "p": "table", "f": "table", "v": "view", "m": "materialized view"}
    for oid, schema, name, kind, rls, force, definition in _run(
        conn,
        f"""
        select c.oid, n.nspname, c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
          case when c.relkind in ('v', 'm') then pg_get_viewdef(c.oid) end
        from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'f', 'v', 'm') and {_schemas_sql("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        order by n.nspname, c.relname
        """,
    ):
        found[oid] = Table(schema, name, kinds[kind], rls, force, definition=definition)
    oids = list(found)
    for oid, name, type_name, notnull, default in conn.execute(
        "select a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid) from pg_attribute as a "
        "left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum "
        "where a.attrelid = any(%s) and a.attnum > 0 and not a.attisdropped "
        "order by a.attrelid, a.attnum",
        (oids,),
    ):
        found[oid].columns.append(Column(name, type_name, notnull, default))
    for oid, name, definition in conn.execute(
        "select k.conrelid, k.conname, pg_get_constraintdef(k.oid) from pg_constraint as k "
        "where k.conrelid = any(%s) order by k.conrelid, k.conname",
        (oids,),
    ):
        found[oid].constraints.append({"name": name, "definition": definition})
    for oid, definition in conn.execute(
        "select x.indrelid, pg_get_indexdef(x.indexrelid) from pg_index as x "
        "where x.indrelid = any(%s) and not exists (select from pg_constraint as k "
        "where k.conindid = x.indexrelid and k.conrelid = x.indrelid) "
        "order by x.indrelid, x.indexrelid::regclass::text",
        (oids,),
    ):
        found[oid].indexes.append(definition)
    for oid, name, command, permissive, roles in conn.execute(
        "select p.polrelid, p.polname, p.polcmd, p.polpermissive, "
        "(select string_agg(case when r = 0 then 'public' else pg_get_userbyid(r) end, ', ' "
        "order by 1) from unnest(p.polroles) as r) "
        "from pg_policy as p where p.polrelid = any(%s) order by p.polrelid, p.polname",
        (oids,),
    ):
        kind = "" if permissive else "restrictive "
        found[oid].policies.append(
            {"name": name, "command": f"{kind}{COMMANDS[str(command)]}", "roles": roles}
        )
    return list(found.values())


def _types(conn: Connection) -> list[TypeInfo]:
    rows = _run(
        conn,
        f"""
        select n.nspname, t.typname, t.typtype,
          case t.typtype
            when 'e' then (select string_agg(quote_literal(e.enumlabel), ', '
                                             order by e.enumsortorder)
                           from pg_enum as e where e.enumtypid = t.oid)
            when 'd' then format_type(t.typbasetype, t.typtypmod)
            else '' end
        from pg_type as t join pg_namespace as n on n.oid = t.typnamespace
        where t.typtype in ('e', 'd', 'c', 'r') and {_schemas_sql("t.typnamespace")}
          and {not_member("pg_type", "t.oid")}
          and (t.typrelid = 0 or (select c.relkind from pg_class as c where c.oid = t.typrelid)
               = 'c')
        order by n.nspname, t.typname
        """,
    )
    kinds = {"e": "enum", "d": "domain", "c": "composite", "r": "range"}
    return [TypeInfo(schema, name, kinds[kind], detail) for schema, name, kind, detail in rows]


def _functions(conn: Connection) -> list[Function]:
    rows = _run(
        conn,
        f"""
        select f.oid, n.nspname, f.proname, pg_get_function_arguments(f.oid),
          case when f.prokind <> 'p' then pg_get_function_result(f.oid) end,
          case f.prokind when 'p' then 'procedure' when 'a' then 'aggregate'
            else 'function' end,
          l.lanname, f.prosecdef, f.provolatile,
          (select substr(c, length('search_path=') + 1) from unnest(f.proconfig) as c
            where c like 'search_path=%%'),
          coalesce(pg_get_function_sqlbody(f.oid), f.prosrc)
        from pg_proc as f
        join pg_namespace as n on n.oid = f.pronamespace
        join pg_language as l on l.oid = f.prolang
        where {_schemas_sql("f.pronamespace")} and {not_member("pg_proc", "f.oid")}
        order by n.nspname, f.proname, pg_get_function_identity_arguments(f.oid)
        """,
    )
    found: dict[int, Function] = {}
    for oid, schema, name, args, result, kind, language, definer, volatility, path, body in rows:
        found[oid] = Function(
            schema=schema,
            name=name,
            signature=f"{schema}.{name}({args})",
            returns=result,
            kind=kind,
            language=language,
            security_definer=definer,
            volatility=VOLATILITY[volatility],
            search_path=path,
            body=body,
        )
    oids = list(found)
    for oid, table, name, definition in conn.execute(
        "select t.tgfoid, t.tgrelid::regclass::text, t.tgname, pg_get_triggerdef(t.oid) "
        "from pg_trigger as t where not t.tgisinternal and t.tgfoid = any(%s) "
        "order by 2, 3",
        (oids,),
    ):
        found[oid].callers.append(Caller("trigger", table, name, _trigger_detail(definition)))
    for oid, table, name, command in conn.execute(
        "select distinct d.refobjid, p.polrelid::regclass::text, p.polname, p.polcmd "
        "from pg_depend as d join pg_policy as p on p.oid = d.objid "
        "where d.classid = 'pg_policy'::regclass and d.refclassid = 'pg_proc'::regclass "
        "and d.refobjid = any(%s) order by 2, 3",
        (oids,),
    ):
        found[oid].callers.append(Caller("policy", table, name, COMMANDS[str(command)]))
    return list(found.values())


def _trigger_detail(definition: str) -> str:
    """`BEFORE INSERT OR UPDATE … FOR EACH ROW` of a trigger's definition, in lower case."""
    text = definition.split(" ON ", 1)[0]
    for word in ("CREATE CONSTRAINT TRIGGER ", "CREATE TRIGGER "):
        if text.startswith(word):
            text = text[len(word) :].split(" ", 1)[1] if " " in text[len(word) :] else ""
            break
    each = "for each row" if "FOR EACH ROW" in definition else "for each statement"
    return f"{text.lower()}, {each}"


def as_text(domains: list[Domain]) -> str:
    """The dump for people: one section per domain, bodies indented."""
    out: list[str] = []
    for domain in domains:
        where = f" ({domain.file})" if domain.file else ""
        out.append(f"== {domain.name}{where}")
        if not (domain.tables or domain.types or domain.functions):
            out.append("  (nothing)")
        for type_info in domain.types:
            detail = f": {type_info.detail}" if type_info.detail else ""
            out.append(f"{type_info.kind} {type_info.schema}.{type_info.name}{detail}")
        for table in domain.tables:
            out.extend(_table_text(table))
        for function in domain.functions:
            out.extend(_function_text(function))
        out.append("")
    return "\n".join(out)


def _table_text(table: Table) -> list[str]:
    flags = ""
    if table.kind == "table" and not table.rls:
        flags = " (RLS off)"
    elif table.kind == "table":
        flags = " (RLS on, forced)" if table.force_rls else " (RLS on)"
    text = [f"{table.kind} {table.schema}.{table.name}{flags}"]
    for column in table.columns:
        not_null = " not null" if column.not_null else ""
        default = f" default {column.default}" if column.default is not None else ""
        text.append(f"  {column.name} {column.type}{not_null}{default}")
    text.extend(f"  constraint {c['name']}: {c['definition']}" for c in table.constraints)
    text.extend(f"  {index}" for index in table.indexes)
    text.extend(
        f"  policy {_ident(p['name'])}: {p['command']} to {p['roles']}" for p in table.policies
    )
    if table.definition is not None:
        text.extend(f"    {line}" for line in table.definition.strip().splitlines())
    return text


def _function_text(function: Function) -> list[str]:
    returns = f" returns {function.returns}" if function.returns else ""
    traits = [function.language, function.volatility]
    if function.security_definer:
        traits.append("security definer")
    if function.search_path is not None:
        traits.append(f"search_path={function.search_path}")
    text = [f"{function.kind} {function.signature}{returns}", f"  {', '.join(traits)}"]
    text.extend(f"    {line}" for line in function.body.strip("\n").splitlines())
    text.extend(
        f"  called by {c.kind} {c.table}.{_ident(c.name)} ({c.detail})" for c in function.callers
    )
    return text


def _ident(name: str) -> str:
    """A name as SQL would write it: quoted unless it is a plain lower-case identifier."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'
