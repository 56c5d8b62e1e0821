"""`payguard policies generate`: write the specs' SQL as a new migration, unless the newest
generated migration already holds exactly that SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from payguard.migrations import load_migrations, read_sql
from payguard.policies.render import render
from payguard.policies.spec import load_specs
from payguard.project import Project

MIGRATION_NAME = "rls_policies"


@dataclass(frozen=True)
class Generated:
    path: Path
    written: bool


def generate(project: Project, *, now: datetime | None = None) -> Generated:
    sql = render(load_specs(project.policies_dir))
    migrations = load_migrations(project.migrations_dir)
    previous = [m for m in migrations if m.name == MIGRATION_NAME]
    if previous and read_sql(previous[-1].path) == sql:
        return Generated(previous[-1].path, written=False)
    stamp = (now or datetime.now(UTC)).replace(microsecond=0)
    newest = max((m.version for m in migrations), default="")
    while stamp.strftime("%Y%m%d%H%M%S") <= newest:
        stamp += timedelta(seconds=1)
    path = project.migrations_dir / f"{stamp.strftime('%Y%m%d%H%M%S')}_{MIGRATION_NAME}.sql"
    path.write_bytes(sql.encode())
    return Generated(path, written=True)
