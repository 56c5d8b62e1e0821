"""The equivalence check: a database built from the migrations and one built from the schema
files must be the same database.

Both are scratch databases on one server, dropped afterwards. The
migrations' one is a copy of the test template (when the template is current for this
project) less its `tests` schema, else a fresh deploy; the schema files' one gets the
Supabase stand-in and then the files, as `payguard deploy` would.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from payguard.cluster import DATABASE
from payguard.databases import drop_database, recreate_database
from payguard.db import connect
from payguard.deploy import deploy
from payguard.project import Project
from payguard.schema.build import build_database
from payguard.schema.catalog import snapshot
from payguard.schema.compare import Difference, compare
from payguard.schema.files import load_schema_files
from payguard.schema.server import database_url, scratch_name
from payguard.template import TEMPLATE, TEMPLATE_LOCK_KEY, fingerprint, remove_test_helpers

MIGRATIONS = "migrations"
SCHEMA_FILES = "schema files"


@dataclass
class CheckResult:
    """The differences found, and how the check went."""

    differences: list[Difference] = field(default_factory=list)
    objects: int = 0
    schema_files: list[str] = field(default_factory=list)
    from_template: bool = False
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return not self.differences

    def as_dict(self) -> dict[str, object]:
        return {
            "equal": self.equal,
            "objects": self.objects,
            "schema_files": self.schema_files,
            "migrations_from_template": self.from_template,
            "seconds": self.seconds,
            "differences": [d.as_dict() for d in self.differences],
        }


def check(server_url: str, project: Project) -> CheckResult:
    """Build both databases on the server of `server_url` (a superuser's URL), compare them,
    drop them. A difference is reported by object key, `only in migrations`, `only in schema
    files` or `differs`."""
    started = time.perf_counter()
    files = load_schema_files(project)  # a config error stops the check before any build
    result = CheckResult(schema_files=[f.name for f in files])
    migrations_db = scratch_name("schema_migrations")
    files_db = scratch_name("schema_files")
    try:
        # One after the other: the stand-in sets cluster-wide roles up, and two of it at once
        # would collide ("tuple concurrently updated").
        result.from_template = _from_migrations(server_url, migrations_db, project)
        build_database(server_url, files_db, project)
        with ThreadPoolExecutor(max_workers=2) as pool:
            a, b = pool.map(
                snapshot, [database_url(server_url, n) for n in (migrations_db, files_db)]
            )
    finally:
        for name in (migrations_db, files_db):
            drop_database(server_url, name)
    result.differences = compare(a, b, a_name=MIGRATIONS, b_name=SCHEMA_FILES)
    result.objects = len(a.keys() | b.keys())
    result.seconds = round(time.perf_counter() - started, 2)
    return result


def _from_migrations(server_url: str, name: str, project: Project) -> bool:
    """Build `name` from the migrations; True when it was copied from the template."""
    if _clone_current_template(server_url, name, project):
        remove_test_helpers(database_url(server_url, name))
        return True
    recreate_database(server_url, name)
    deploy(database_url(server_url, name), project)
    return False


def _clone_current_template(server_url: str, name: str, project: Project) -> bool:
    """Copy the test template into `name` if it is current for this project's migrations;
    the template's lock keeps it from being rebuilt meanwhile."""
    # Advisory locks belong to a database: take the one ensure_template takes, in `postgres`.
    with connect(database_url(server_url, DATABASE)) as conn:
        conn.execute("select pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        try:
            row = conn.execute(
                "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                (TEMPLATE,),
            ).fetchone()
            if row is None or row[0] != fingerprint(project):
                return False
            recreate_database(server_url, name, template=TEMPLATE)
            return True
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (TEMPLATE_LOCK_KEY,))
