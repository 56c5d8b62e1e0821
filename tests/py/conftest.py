"""Fixtures shared by the pytest suite. The database fixtures (project, cluster, database,
database_url, admin_url, db, client, make_user) come from payguard's own plugin."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.project import Project

pytest_plugins = ["payguard.testing.fixtures"]

MigrationWriter = Callable[[str, str], Path]


@pytest.fixture
def scratch_project(tmp_path: Path, project: Project) -> Project:
    """An empty Supabase project folder, with the real project's config.toml."""
    supabase = tmp_path / "supabase"
    (supabase / "migrations").mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", supabase / "config.toml")
    return Project(tmp_path)


@pytest.fixture
def write_migration(scratch_project: Project) -> MigrationWriter:
    """write_migration("20260101000000_name", sql) adds a migration file to the scratch project."""

    def write(stem: str, sql: str) -> Path:
        path = scratch_project.migrations_dir / f"{stem}.sql"
        path.write_text(sql)
        return path

    return write


@pytest.fixture
def empty_database(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a new, empty database (no stand-in, no migrations), dropped afterwards."""
    name = f"payguard_scratch_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    recreate_database(cluster.admin_url(), name)
    yield name
    drop_database(cluster.admin_url(), name)


@pytest.fixture(scope="session")
def supabase_cli(project: Project) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the pinned Supabase CLI; returns the completed process (output as text)."""
    binary = project.root / "node_modules" / ".bin" / "supabase"
    if not binary.exists():
        pytest.fail("the Supabase CLI is not installed; run `make setup`")

    def run(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"}
        return subprocess.run(
            [str(binary), *args, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )

    return run
