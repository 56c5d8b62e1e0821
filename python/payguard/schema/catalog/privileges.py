"""Snapshot of who may do what: grants on every kind of object (a column's grants included),
default privileges, and the roles payguard creates with their memberships.

A grant is one object, keyed as `grant select on public.users to anon`; an object whose ACL
was never set is compared through its default ACL (the owner's privileges, and PUBLIC's
EXECUTE on a function), so that never granting and granting back the defaults compare equal.
"""

from __future__ import annotations

from payguard.db import Connection
from payguard.schema.catalog.code import function_key_sql
from payguard.schema.catalog.scope import (
    SUPABASE_ROLES,
    Definitions,
    in_scope,
    lines,
    query,
    yes,
)

GRANTEE = "case when a.grantee = 0 then 'public' else format('%%I', pg_get_userbyid(a.grantee)) end"
DEFAULT_OBJECTS = {
    "r": "tables",
    "S": "sequences",
    "f": "functions",
    "T": "types",
    "n": "schemas",
}

# Each grantable kind: the SQL for (object name, ACL) over the objects in scope.
_OBJECT_ACLS = {
    "relation": f"""
        select case when c.relkind = 'S' then 'sequence ' else '' end
               || format('%%I.%%I', n.nspname, c.relname),
          coalesce(c.relacl, acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char",
                                        c.relowner))
        from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'f', 'v', 'm', 'S') and {in_scope("c.relnamespace")}
    """,
    "function": f"""
        select {function_key_sql("f", "fn")}, coalesce(f.proacl, acldefault('f', f.proowner))
        from pg_proc as f join pg_namespace as fn on fn.oid = f.pronamespace
        where {in_scope("f.pronamespace")}
    """,
    "schema": f"""
        select 'schema ' || format('%%I', n.nspname),
          coalesce(n.nspacl, acldefault('n', n.nspowner))
        from pg_namespace as n where {in_scope("n.oid")}
    """,
    "type": f"""
        select 'type ' || format('%%I.%%I', n.nspname, t.typname),
          coalesce(t.typacl, acldefault('T', t.typowner))
        from pg_type as t join pg_namespace as n on n.oid = t.typnamespace
        where {in_scope("t.typnamespace")} and t.typtype in ('e', 'd', 'c', 'r', 'b')
          and (t.typrelid = 0 or (select c.relkind from pg_class as c where c.oid = t.typrelid)
               = 'c')
          and not exists (select from pg_type as o where o.typarray = t.oid)
    """,
    "database": """
        select 'database', coalesce(d.datacl, acldefault('d', d.datdba))
        from pg_database as d where d.datname = current_database()
    """,
}


def grants(conn: Connection) -> Definitions:
    found: Definitions = {}
    for objects in _OBJECT_ACLS.values():
        rows = query(
            conn,
            f"""
            select lower(a.privilege_type), o.name, {GRANTEE},
              pg_get_userbyid(a.grantor), a.is_grantable
            from ({objects}) as o (name, acl)
            cross join lateral aclexplode(o.acl) as a
            """,
        )
        for privilege, name, grantee, grantor, grantable in rows:
            found[f"grant {privilege} on {name} to {grantee}"] = lines(
                ("grantor", grantor), ("grant option", yes(grantable))
            )
    rows = query(
        conn,
        f"""
        select lower(a.privilege_type), format('%%I', t.attname),
          format('%%I.%%I', n.nspname, c.relname), {GRANTEE}, pg_get_userbyid(a.grantor),
          a.is_grantable
        from pg_attribute as t
        join pg_class as c on c.oid = t.attrelid
        join pg_namespace as n on n.oid = c.relnamespace
        cross join lateral aclexplode(t.attacl) as a
        where t.attacl is not null and t.attnum > 0 and not t.attisdropped
          and {in_scope("c.relnamespace")}
        """,
    )
    for privilege, column, table, grantee, grantor, grantable in rows:
        found[f"grant {privilege}({column}) on {table} to {grantee}"] = lines(
            ("grantor", grantor), ("grant option", yes(grantable))
        )
    return found


def default_privileges(conn: Connection) -> Definitions:
    rows = query(
        conn,
        f"""
        select format('%%I', pg_get_userbyid(d.defaclrole)),
          case when d.defaclnamespace = 0 then ''
               else ' in schema ' || format('%%I', d.defaclnamespace::regnamespace::text) end,
          d.defaclobjtype,
          (select string_agg(g.grantee || ': ' || g.privileges, E'\\n' order by g.grantee)
             from (select {GRANTEE} as grantee,
                     string_agg(lower(a.privilege_type)
                                || case when a.is_grantable then ' (grant option)' else '' end,
                                ', ' order by a.privilege_type) as privileges
                   from aclexplode(d.defaclacl) as a group by a.grantee) as g)
        from pg_default_acl as d
        where d.defaclnamespace = 0 or {in_scope("d.defaclnamespace")}
        """,
    )
    return {
        f"default privileges for role {role}{schema} on {DEFAULT_OBJECTS[kind]}": acl or ""
        for role, schema, kind, acl in rows
    }


def roles(conn: Connection) -> Definitions:
    """The roles this database's objects and privileges name, other than PostgreSQL's and the
    Supabase stand-in's. Roles are cluster-wide: within one cluster they match trivially."""
    rows = query(
        conn,
        """
        with named as (
          select distinct s.refobjid as oid from pg_shdepend as s
          join pg_database as d on d.oid = s.dbid
          where d.datname = current_database() and s.refclassid = 'pg_authid'::regclass
        ), ours as (
          select r.oid, r.rolname from pg_roles as r join named using (oid)
          where r.rolname <> all(%(supabase)s) and r.rolname !~ '^pg_' and r.oid <> 10
        ), known as (
          select oid from ours
          union select oid from pg_roles where rolname = any(%(supabase)s)
        )
        select format('%%I', r.rolname), r.rolsuper, r.rolinherit, r.rolcreaterole,
          r.rolcreatedb, r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit,
          r.rolvaliduntil::text,
          (select array_to_string(s.setconfig, ', ') from pg_db_role_setting as s
             where s.setrole = r.oid and s.setdatabase = 0),
          (select string_agg(format('%%I', g.rolname)
                             || case when m.admin_option then ' (admin option)' else '' end,
                             ', ' order by g.rolname)
             from pg_auth_members as m join pg_roles as g on g.oid = m.roleid
             where m.member = r.oid),
          (select string_agg(format('%%I', g.rolname)
                             || case when m.admin_option then ' (admin option)' else '' end,
                             ', ' order by g.rolname)
             from pg_auth_members as m join pg_roles as g on g.oid = m.member
             where m.roleid = r.oid and m.member in (select oid from known)),
          (select d.description from pg_shdescription as d
             where d.objoid = r.oid and d.classoid = 'pg_authid'::regclass)
        from pg_roles as r join ours using (oid)
        """,
        supabase=list(SUPABASE_ROLES),
    )
    found: Definitions = {}
    for (
        name,
        superuser,
        inherit,
        createrole,
        createdb,
        login,
        replication,
        bypassrls,
        connlimit,
        valid_until,
        settings,
        member_of,
        members,
        comment,
    ) in rows:
        found[f"role {name}"] = lines(
            ("superuser", yes(superuser)),
            ("inherit", yes(inherit)),
            ("create role", yes(createrole)),
            ("create database", yes(createdb)),
            ("login", yes(login)),
            ("replication", yes(replication)),
            ("bypass row level security", yes(bypassrls)),
            ("connection limit", connlimit),
            ("valid until", valid_until),
            ("settings", settings),
            ("member of", member_of),
            ("members", members),
            ("comment", comment),
        )
    return found
