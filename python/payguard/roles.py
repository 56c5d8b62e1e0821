"""payguard's own database roles, and the check that a cluster's existing ones are the same.

Roles belong to the whole cluster, and the migration that creates admin, auditor,
payment_service and escrow_service creates each only if it is missing, then grants it to
authenticator (which takes it per request, as PostgREST does) and postgres. A role of the
same name made by someone else, say one that logs in or bypasses RLS, would be reused
silently and handed to every API request; deploy refuses it instead, before any migration.
"""

from __future__ import annotations

from payguard.db import Connection, is_superuser
from payguard.errors import DatabaseError

PAYGUARD_ROLES = ("admin", "auditor", "payment_service", "escrow_service")
# The roles each is granted to (without the admin option), by the roles_and_grants migration.
EXPECTED_MEMBERS = frozenset({"authenticator", "postgres"})
# Attributes payguard's roles never have (the migration creates them NOLOGIN NOINHERIT,
# with none of these).
FORBIDDEN_ATTRIBUTES = (
    ("rolcanlogin", "LOGIN"),
    ("rolsuper", "SUPERUSER"),
    ("rolcreaterole", "CREATEROLE"),
    ("rolcreatedb", "CREATEDB"),
    ("rolreplication", "REPLICATION"),
    ("rolbypassrls", "BYPASSRLS"),
)


class RoleConflictError(DatabaseError):
    """A role payguard creates exists with other attributes or memberships (exit 3)."""


def role_differences(conn: Connection) -> list[str]:
    """How the cluster's existing payguard roles differ from what payguard gives them; empty
    when none exists yet or each is as payguard made it."""
    attributes = ", ".join(column for column, _ in FORBIDDEN_ATTRIBUTES)
    rows = conn.execute(
        f"select r.rolname, {attributes}, "
        "array(select m.rolname from pg_catalog.pg_auth_members as a "
        "join pg_catalog.pg_roles as m on m.oid = a.member where a.roleid = r.oid "
        "order by 1)::text[], "
        "array(select m.rolname from pg_catalog.pg_auth_members as a "
        "join pg_catalog.pg_roles as m on m.oid = a.member where a.roleid = r.oid "
        "and a.admin_option order by 1)::text[], "
        "array(select g.rolname from pg_catalog.pg_auth_members as a "
        "join pg_catalog.pg_roles as g on g.oid = a.roleid where a.member = r.oid "
        "order by 1)::text[] "
        "from pg_catalog.pg_roles as r where r.rolname = any(%s) order by r.rolname",
        (list(PAYGUARD_ROLES),),
    ).fetchall()
    found: list[str] = []
    for row in rows:
        name = row[0]
        flags = row[1 : 1 + len(FORBIDDEN_ATTRIBUTES)]
        members, admins, member_of = row[1 + len(FORBIDDEN_ATTRIBUTES) :]
        problems = [label for (_, label), on in zip(FORBIDDEN_ATTRIBUTES, flags, strict=True) if on]
        strangers = sorted(set(members) - EXPECTED_MEMBERS)
        if strangers:
            problems.append(f"members {', '.join(strangers)}")
        if admins:
            problems.append(f"members with the admin option {', '.join(admins)}")
        if member_of:
            problems.append(f"membership in {', '.join(member_of)}")
        if problems:
            found.append(f"{name} has {', '.join(problems)}")
    return found


def check_roles(conn: Connection) -> None:
    """Raise RoleConflictError, listing every difference, unless the existing payguard roles are
    as payguard makes them."""
    found = role_differences(conn)
    if found:
        raise RoleConflictError(
            "refusing to deploy, nothing was applied: roles payguard creates already exist "
            f"with what payguard does not give them ({'; '.join(found)}); payguard's roles are "
            "NOLOGIN, with no other attribute, granted only to "
            f"{' and '.join(sorted(EXPECTED_MEMBERS))} and to no other role: drop or alter "
            "them (ALTER ROLE ... NOLOGIN NOSUPERUSER ...; REVOKE ... FROM ...), then deploy "
            "again"
        )


def take_cluster_roles(conn: Connection) -> None:
    """Hold the cluster's roles until this transaction ends, when the connection is a
    superuser's. Roles belong to the whole cluster, and the stand-in and the migrations create
    theirs after checking that they are missing: two deploys into two databases of a fresh
    cluster at once would both find a role missing, and the second to create it would fail.
    SHARE ROW EXCLUSIVE on pg_authid makes such transactions take turns (and waits for any
    CREATE or ALTER ROLE under way), while logins and reads of roles go on. Elsewhere (a
    Supabase project, whose deployer is no superuser) the roles exist already."""
    if is_superuser(conn):
        conn.execute("lock table pg_catalog.pg_authid in share row exclusive mode")
