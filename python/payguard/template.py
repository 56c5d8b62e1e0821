"""The template database that test runs clone: every migration applied, plus the `tests`
schema of SQL helpers. It is rebuilt only when what it is built from changes."""

from __future__ import annotations

import hashlib
import os
import time
from itertools import count
from pathlib import Path

from psycopg import errors, sql

from payguard import __version__
from payguard.cluster import APP_ROLE, DATABASE, Cluster
from payguard.databases import drop_database, recreate_database
from payguard.db import connect
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.project import Project

TEMPLATE = "payguard_template"
TEMPLATE_LOCK_KEY = 0x7465_6D70  # "temp"
# CREATE DATABASE … TEMPLATE fails while another session is connected to the template (a test
# reading it): a clone waits this long for it to leave.
CLONE_WAIT_SECONDS = 30.0
_clones = count(1)


def fingerprint(project: Project) -> str:
    """A digest of everything the template is built from: payguard's own code (the deploy
    and the stand-in), the migrations and the test helpers."""
    digest = hashlib.sha256(__version__.encode())
    package = Path(__file__).parent
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.sql")]):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    for path in sorted(project.migrations_dir.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    if project.test_helpers_file.is_file():
        digest.update(project.test_helpers_file.read_bytes())
    return digest.hexdigest()


def ensure_template(cluster: Cluster, project: Project) -> bool:
    """Build the template unless it is current. Returns True when it was (re)built."""
    wanted = fingerprint(project)
    admin = cluster.admin_url(DATABASE)
    with connect(admin) as lock_conn:
        lock_conn.execute("select pg_advisory_lock(%s)", (TEMPLATE_LOCK_KEY,))
        row = lock_conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
            (TEMPLATE,),
        ).fetchone()
        if row is not None and row[0] == wanted:
            return False
        if row is not None:
            lock_conn.execute(
                sql.SQL("alter database {} is_template false").format(sql.Identifier(TEMPLATE))
            )
        recreate_database(admin, TEMPLATE)
        deploy(cluster.admin_url(TEMPLATE), project)
        _install_test_helpers(cluster, project)
        lock_conn.execute(
            sql.SQL("alter database {} is_template true").format(sql.Identifier(TEMPLATE))
        )
        lock_conn.execute(
            sql.SQL("comment on database {} is {}").format(
                sql.Identifier(TEMPLATE), sql.Literal(wanted)
            )
        )
    return True


def remove_test_helpers(url: str) -> None:
    """Drop the test helpers (the `tests` schema) from a copy of the template at `url`: what
    is left is the database a deploy of the migrations makes, object by object (the schema
    check compares the two)."""
    with connect(url, autocommit=True) as conn:
        conn.execute("drop schema tests cascade")


def _install_test_helpers(cluster: Cluster, project: Project) -> None:
    helpers = project.test_helpers_file
    if not helpers.is_file():
        raise PayguardError(f"test helpers not found at {helpers}")
    with connect(cluster.admin_url(TEMPLATE)) as conn, conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(APP_ROLE)))
        conn.execute(helpers.read_text())


def clone_template(
    cluster: Cluster, purpose: str, *, template: str = TEMPLATE
) -> tuple[str, float]:
    """A new database copied from the template (or from `template`, a database of the
    cluster that no session is connected to); returns its name and the seconds it took."""
    name = f"payguard_{purpose}_{os.getpid()}_{next(_clones)}"
    started = time.perf_counter()
    while True:
        try:
            recreate_database(cluster.admin_url(DATABASE), name, template=template)
        except errors.ObjectInUse:
            if time.perf_counter() - started > CLONE_WAIT_SECONDS:
                raise
            time.sleep(0.05)
            continue
        return name, time.perf_counter() - started


def drop_clone(cluster: Cluster, name: str) -> None:
    drop_database(cluster.admin_url(DATABASE), name)
