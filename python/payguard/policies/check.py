"""`payguard policies check`: does the database match the specs?

Policy expressions are stored deparsed, so a spec's text cannot be compared with the
catalog's. The check therefore asks PostgreSQL: inside a transaction it reads the catalog,
applies the specs' SQL, reads the catalog again, and rolls back. Any difference between the
two readings is a difference between the database and the specs. It needs the owner's (or a
superuser's) connection, and holds the tables' locks only for that transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from payguard.db import Connection, connect
from payguard.errors import PayguardError
from payguard.policies.render import render
from payguard.policies.spec import MANAGED_ROLES, TableSpec


@dataclass(frozen=True)
class TableState:
    rls: bool
    force_rls: bool
    policies: dict[str, tuple[str, bool, tuple[str, ...], str | None, str | None]]
    # (role or "public", privilege, column or ""), " with grant option" appended if so
    grants: frozenset[tuple[str, str, str]]


def read_state(conn: Connection, schema: str) -> dict[str, TableState]:
    """RLS flags, policies and managed roles' grants of every table in `schema`."""
    tables = conn.execute(
        "select c.relname, c.relrowsecurity, c.relforcerowsecurity from pg_class as c "
        "where c.relnamespace = %s::regnamespace and c.relkind in ('r', 'p')",
        (schema,),
    ).fetchall()
    state: dict[str, TableState] = {}
    for name, rls, force in tables:
        policies = {
            str(row[0]): (
                str(row[1]),
                row[2] == "PERMISSIVE",
                tuple(sorted(row[3])),
                row[4],
                row[5],
            )
            for row in conn.execute(
                "select policyname, cmd, permissive, roles::text[], qual, with_check "
                "from pg_policies where schemaname = %s and tablename = %s",
                (schema, name),
            )
        }
        grants = conn.execute(
            "select coalesce(g.rolname, 'public'), a.privilege_type, '', a.is_grantable "
            "from pg_class as c cross join lateral aclexplode(c.relacl) as a "
            "left join pg_roles as g on g.oid = a.grantee "
            "where c.oid = format('%%I.%%I', %s::text, %s::text)::regclass "
            "and (a.grantee = 0 or g.rolname = any(%s)) "
            "union all "
            "select coalesce(g.rolname, 'public'), a.privilege_type, t.attname, a.is_grantable "
            "from pg_attribute as t cross join lateral aclexplode(t.attacl) as a "
            "left join pg_roles as g on g.oid = a.grantee "
            "where t.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass "
            "and t.attnum > 0 and not t.attisdropped and (a.grantee = 0 or g.rolname = any(%s))",
            (schema, name, list(MANAGED_ROLES), schema, name, list(MANAGED_ROLES)),
        ).fetchall()
        state[str(name)] = TableState(
            rls=bool(rls),
            force_rls=bool(force),
            policies=policies,
            grants=frozenset(
                (str(r), str(p).lower() + (" with grant option" if g else ""), str(c))
                for r, p, c, g in grants
            ),
        )
    return state


def expected_state(conn: Connection, specs: list[TableSpec], schema: str) -> dict[str, TableState]:
    """The catalog as the specs' SQL would leave it: applied, read, and rolled back (to a
    savepoint, so that it also works inside the caller's transaction)."""
    with conn.transaction(savepoint_name="payguard_policies_check", force_rollback=True):
        try:
            conn.execute("set local lock_timeout = '10s'")
            conn.execute(render(specs))
        except psycopg.Error as exc:
            raise PayguardError(
                f"the specs' SQL does not apply to this database: {exc.diag.message_primary or exc}"
            ) from None
        return read_state(conn, schema)


def differences(url: str, specs: list[TableSpec]) -> list[str]:
    """Every difference between the database at `url` and the specs, as lines for people."""
    with connect(url) as conn:
        return differences_on(conn, specs)


def differences_on(conn: Connection, specs: list[TableSpec]) -> list[str]:
    """differences() on an open connection, which may be inside a transaction."""
    schema = "public"
    actual = read_state(conn, schema)
    missing_tables = sorted(s.table for s in specs if s.table not in actual)
    if missing_tables:
        return [f"{schema}.{t}: the table has a spec but does not exist" for t in missing_tables]
    expected = expected_state(conn, specs, schema)
    found: list[str] = []
    specified = {s.table for s in specs}
    for table in sorted(actual):
        where = f"{schema}.{table}"
        if table not in specified:
            found.append(f"{where}: no policy spec (add policies/{table}.toml)")
            continue
        found += _table_differences(where, expected[table], actual[table])
    return found + surface_differences(conn, schema)


def surface_differences(conn: Connection, schema: str) -> list[str]:
    """What widens the API surface beside the tables' grants and policies: other relations
    in the API schema, memberships that let an API role become another, disabled triggers,
    and functions in `private` that anyone may call or that run with a mutable search_path."""
    found = [
        f"{schema}.{name}: a {kind} in the API schema, which no spec covers"
        for name, kind in conn.execute(
            "select c.relname, case c.relkind when 'v' then 'view' "
            "when 'm' then 'materialized view' when 'f' then 'foreign table' end "
            "from pg_class as c where c.relnamespace = %s::regnamespace "
            "and c.relkind in ('v', 'm', 'f') order by 1",
            (schema,),
        )
    ]
    found += [
        f"{member} is a member of {role}, so it can act as {role}"
        for member, role in conn.execute(
            "select m.rolname, r.rolname from pg_auth_members as a "
            "join pg_roles as m on m.oid = a.member join pg_roles as r on r.oid = a.roleid "
            "where m.rolname = any(%s) order by 1, 2",
            (list(MANAGED_ROLES),),
        )
    ]
    found += [
        f"{schema}.{table}: trigger {trigger} is disabled"
        for table, trigger in conn.execute(
            "select c.relname, t.tgname from pg_trigger as t "
            "join pg_class as c on c.oid = t.tgrelid "
            "where c.relnamespace = %s::regnamespace and not t.tgisinternal "
            "and t.tgenabled = 'D' order by 1, 2",
            (schema,),
        )
    ]
    found += [
        f"{signature}: {problem}"
        for signature, problem in conn.execute(
            "select p.oid::regprocedure::text, 'anyone (PUBLIC) may execute it' "
            "from pg_proc as p where p.pronamespace = 'private'::regnamespace "
            "and has_function_privilege('public', p.oid, 'execute') "
            "and exists (select from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) "
            "as a where a.grantee = 0 and a.privilege_type = 'EXECUTE') "
            "union all "
            "select p.oid::regprocedure::text, 'security definer without search_path set' "
            "from pg_proc as p where p.pronamespace = 'private'::regnamespace and p.prosecdef "
            "and not exists (select from unnest(p.proconfig) as c where c like 'search_path=%%') "
            "order by 1"
        )
    ]
    return found


def _table_differences(where: str, want: TableState, have: TableState) -> list[str]:
    found: list[str] = []
    if want.rls != have.rls:
        found.append(
            f"{where}: row level security is {_on(have.rls)}, the spec says {_on(want.rls)}"
        )
    if want.force_rls != have.force_rls:
        found.append(
            f"{where}: forced row level security is {_on(have.force_rls)}, "
            f"the spec says {_on(want.force_rls)}"
        )
    for name in sorted(set(want.policies) | set(have.policies)):
        if name not in have.policies:
            found.append(f'{where}: policy "{name}" is missing')
        elif name not in want.policies:
            found.append(f'{where}: policy "{name}" is not in the spec')
        else:
            for field, old, new in zip(
                ("command", "permissive", "roles", "using", "with check"),
                have.policies[name],
                want.policies[name],
                strict=True,
            ):
                if old != new:
                    found.append(
                        f'{where}: policy "{name}": {field} is {old!r}, the spec says {new!r}'
                    )
    for role, privilege, column in sorted(have.grants - want.grants):
        found.append(
            f"{where}: {role} has {_privilege(privilege, column)}, which the spec does not grant"
        )
    for role, privilege, column in sorted(want.grants - have.grants):
        found.append(
            f"{where}: {role} lacks {_privilege(privilege, column)}, which the spec grants"
        )
    return found


def _privilege(privilege: str, column: str) -> str:
    return f"{privilege} ({column})" if column else privilege


def _on(flag: bool) -> str:
    return "on" if flag else "off"
