"""A snapshot of a database: {object key: normalized definition}, for every object a migration
can create, outside PostgreSQL's own schemas, the test helpers and the migration history.

Keys are stable and readable (`function private.post_transfer(uuid, bigint)`,
`trigger public.users.users_updated_at`, `grant select(email) on public.users to admin`), so
that two snapshots compare object by object.
"""

from __future__ import annotations

from collections.abc import Callable

from payguard.db import Connection, connect
from payguard.schema.catalog import code, comments, data, objects, others, privileges
from payguard.schema.catalog.scope import Definitions

Snapshot = dict[str, str]

SECTIONS: tuple[Callable[[Connection], Definitions], ...] = (
    objects.database,
    objects.schemas,
    objects.extensions,
    objects.types,
    objects.tables,
    objects.constraints,
    objects.indexes,
    objects.sequences,
    objects.views,
    objects.publications,
    code.functions,
    code.triggers,
    code.event_triggers,
    code.policies,
    code.rules,
    privileges.grants,
    privileges.default_privileges,
    privileges.roles,
    comments.comments,
    others.others,
    data.table_data,
)


def snapshot(url: str) -> Snapshot:
    """The snapshot of the database at `url` (a superuser's connection reads every row)."""
    found: Snapshot = {}
    with connect(url) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        # Definitions name every object with its schema, whatever the role's search_path.
        conn.execute("set local search_path = ''")
        for section in SECTIONS:
            found.update(section(conn))
    return dict(sorted(found.items()))
