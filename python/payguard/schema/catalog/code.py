"""Snapshot of the code a database runs: functions and procedures (their bodies exactly),
triggers, event triggers, row-level security policies and rules."""

from __future__ import annotations

from payguard.db import Connection
from payguard.schema.catalog.scope import Definitions, in_scope, lines, not_member, query, yes

FUNCTION_KINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}
VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
PARALLEL = {"s": "safe", "r": "restricted", "u": "unsafe"}
TRIGGER_ENABLED = {"O": "enabled", "D": "disabled", "R": "replica", "A": "always"}
COMMANDS = {"r": "select", "a": "insert", "w": "update", "d": "delete", "*": "all"}


def function_key_sql(proc: str, namespace: str) -> str:
    """SQL for a function's key, `function schema.name(arg types)`, over pg_proc alias `proc`
    and its pg_namespace alias `namespace`."""
    return (
        f"case {proc}.prokind when 'p' then 'procedure' when 'a' then 'aggregate' "
        f"else 'function' end || ' ' || format('%%I.%%I', {namespace}.nspname, {proc}.proname) "
        f"|| '(' || oidvectortypes({proc}.proargtypes) || ')'"
    )


def functions(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select {function_key_sql("f", "fn")}, pg_get_function_arguments(f.oid),
          case when f.prokind <> 'p' then pg_get_function_result(f.oid) end,
          l.lanname, f.prosecdef, f.provolatile, f.proisstrict, f.proleakproof, f.proparallel,
          f.procost, case when f.proretset then f.prorows end,
          (select string_agg(s, ', ' order by s) from unnest(f.proconfig) as s),
          pg_get_userbyid(f.proowner), f.probin,
          case when f.prosqlbody is not null then pg_get_function_sqlbody(f.oid) end,
          (select format('state %%s, transition %%s, final %%s, initial %%s',
                         format_type(g.aggtranstype, null), g.aggtransfn::regprocedure,
                         nullif(g.aggfinalfn, 0)::regprocedure, g.agginitval)
             from pg_aggregate as g where g.aggfnoid = f.oid),
          f.prosrc
        from pg_proc as f
        join pg_namespace as fn on fn.oid = f.pronamespace
        join pg_language as l on l.oid = f.prolang
        where {in_scope("f.pronamespace")} and {not_member("pg_proc", "f.oid")}
        """,
    )
    found: Definitions = {}
    for (
        key,
        arguments,
        result,
        language,
        definer,
        volatility,
        strict,
        leakproof,
        parallel,
        cost,
        result_rows,
        config,
        owner,
        binary,
        sql_body,
        aggregate,
        source,
    ) in rows:
        head = lines(
            ("arguments", arguments),
            ("returns", result),
            ("language", language),
            ("security definer", yes(definer)),
            ("volatility", VOLATILITY[volatility]),
            ("strict", yes(strict)),
            ("leakproof", yes(leakproof)),
            ("parallel", PARALLEL[parallel]),
            ("cost", cost),
            ("rows", result_rows),
            ("config", config or None),
            ("owner", owner),
            ("library", binary),
            ("aggregate", aggregate),
        )
        body = sql_body if sql_body is not None else source
        found[key] = f"{head}\nbody:\n{body}"
    return found


def triggers(conn: Connection) -> Definitions:
    """Triggers that a statement created (not the internal ones behind foreign keys)."""
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, c.relname, t.tgname),
          pg_get_triggerdef(t.oid), t.tgenabled
        from pg_trigger as t
        join pg_class as c on c.oid = t.tgrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where not t.tgisinternal and {in_scope("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        """,
    )
    return {
        f"trigger {name}": lines(
            ("definition", definition), ("enabled", TRIGGER_ENABLED[str(enabled)])
        )
        for name, definition, enabled in rows
    }


def event_triggers(conn: Connection) -> Definitions:
    rows = query(
        conn,
        """
        select format('%%I', e.evtname), e.evtevent, array_to_string(e.evttags, ', '),
          e.evtfoid::regprocedure::text, e.evtenabled, pg_get_userbyid(e.evtowner)
        from pg_event_trigger as e
        """,
    )
    return {
        f"event trigger {name}": lines(
            ("event", event),
            ("tags", tags),
            ("function", function),
            ("enabled", TRIGGER_ENABLED[str(enabled)]),
            ("owner", owner),
        )
        for name, event, tags, function, enabled, owner in rows
    }


def policies(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, c.relname, p.polname), p.polcmd,
          p.polpermissive,
          (select string_agg(case when r = 0 then 'public' else format('%%I', pg_get_userbyid(r))
                             end, ', ' order by 1)
             from unnest(p.polroles) as r),
          pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
        from pg_policy as p
        join pg_class as c on c.oid = p.polrelid
        join pg_namespace as n on n.oid = c.relnamespace
        where {in_scope("c.relnamespace")}
        """,
    )
    return {
        f"policy {name}": lines(
            ("command", COMMANDS[str(command)]),
            ("kind", "permissive" if permissive else "restrictive"),
            ("roles", roles),
            ("using", qual),
            ("with check", check),
        )
        for name, command, permissive, roles, qual, check in rows
    }


def rules(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I.%%I.%%I', n.nspname, c.relname, r.rulename), pg_get_ruledef(r.oid),
          r.ev_enabled
        from pg_rewrite as r
        join pg_class as c on c.oid = r.ev_class
        join pg_namespace as n on n.oid = c.relnamespace
        where r.rulename <> '_RETURN' and {in_scope("c.relnamespace")}
          and {not_member("pg_class", "c.oid")}
        """,
    )
    return {
        f"rule {name}": lines(("definition", definition), ("enabled", TRIGGER_ENABLED[enabled]))
        for name, definition, enabled in rows
    }
