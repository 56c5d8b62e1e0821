"""Forward-only, enforced: a migration file, once committed, never changes. Each file in
supabase/migrations/ is compared with the version of it that was first committed, from git's
history (CI's clone has it). A file not committed yet may still change."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from payguard.project import Project


def _git(project: Project, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(project.root), *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def history(project: Project) -> Project:
    if _git(project, "rev-parse", "--is-inside-work-tree").returncode != 0:
        pytest.fail("the project is not a git checkout: the forward-only check needs its history")
    shallow = _git(project, "rev-parse", "--is-shallow-repository").stdout.strip()
    if shallow == b"true":
        pytest.fail("the clone is shallow: fetch the whole history (git fetch --unshallow)")
    return project


def first_committed(project: Project, path: Path) -> bytes | None:
    """The file's content in the commit that added it, or None when no commit holds it."""
    relative = path.relative_to(project.root).as_posix()
    added = _git(
        project,
        "log",
        "--no-renames",
        "--diff-filter=A",
        "--format=%H",
        "--reverse",
        "--",
        relative,
    ).stdout.split()
    if not added:
        return None
    shown = _git(project, "show", f"{added[0].decode()}:{relative}")
    assert shown.returncode == 0, shown.stderr.decode()
    return shown.stdout


def test_every_committed_migration_is_as_first_committed(history: Project) -> None:
    changed = []
    checked = 0
    for path in sorted(history.migrations_dir.glob("*.sql")):
        original = first_committed(history, path)
        if original is None:
            continue
        checked += 1
        if path.read_bytes() != original:
            changed.append(path.name)
    assert checked > 0, "no committed migration found: the check would prove nothing"
    assert not changed, (
        f"committed migrations were edited: {', '.join(changed)}; restore them "
        "(git checkout) and make the change in a new migration"
    )


def test_an_edited_migration_is_found(tmp_path: Path) -> None:
    """The check fails on an edit: a scratch repository with one committed migration, edited."""
    root = tmp_path / "repo"
    migrations = root / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    (root / "supabase" / "config.toml").write_text('project_id = "scratch"\n')
    migration = migrations / "20260101000000_first.sql"
    migration.write_text("create table t (id int);\n")
    env = ["-c", "user.name=payguard", "-c", "user.email=payguard@localhost"]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    subprocess.run(["git", "-C", str(root), *env, "commit", "-qm", "first"], check=True)
    project = Project(root)
    assert first_committed(project, migration) == migration.read_bytes()
    migration.write_text("create table t (id bigint);\n")
    assert first_committed(project, migration) != migration.read_bytes()
    # Committing the edit does not make it the original: the first commit stays the reference.
    subprocess.run(["git", "-C", str(root), *env, "commit", "-qam", "edit"], check=True)
    assert first_committed(project, migration) == b"create table t (id int);\n"
