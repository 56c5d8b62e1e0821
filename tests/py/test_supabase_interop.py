"""payguard deploy and the Supabase CLI agree on which migrations are applied, both ways."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from payguard.databases import drop_database, recreate_database
from payguard.db import connect
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.migrations import load_migrations
from payguard.project import Project
from payguard.standin import apply_standin

# Statements whose splitting is easy to get wrong: comments, quotes, dollar quotes, a
# comment-only tail.
TRICKY = """\
-- A header comment; with a semicolon.
create table public.interop_notes (
  id bigint generated always as identity primary key,
  body text not null default 'a;b' check (body <> '')
);

/* a block comment; it /* nests; */ here */
create function public.interop_count() returns bigint
language plpgsql
as $body$
begin
  return (select count(*) from public.interop_notes); -- inline; comment
end
$body$;

comment on table public.interop_notes is 'it''s; quoted';
-- a trailing comment
"""


@pytest.fixture(scope="module")
def interop_project(tmp_path_factory: pytest.TempPathFactory, project: Project) -> Project:
    """The project's own migrations, plus one with tricky statements after them (one project
    for the module: a test that edits a migration edits a copy)."""
    made = Project(tmp_path_factory.mktemp("interop"))
    made.migrations_dir.mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", made.supabase_dir / "config.toml")
    for migration in load_migrations(project.migrations_dir):
        shutil.copy(migration.path, made.migrations_dir / migration.path.name)
    (made.migrations_dir / "20991231000000_interop_tricky.sql").write_text(TRICKY)
    # Windows line endings: the CLI keeps the carriage returns in the stored statements.
    crlf = made.migrations_dir / "20991231000100_interop_crlf.sql"
    crlf.write_bytes(b"-- crlf\r\ncreate table public.interop_crlf (\r\n  id int\r\n);\r\n")
    return made


def applied_in_migration_list(output: str) -> list[str]:
    """Versions the `migration list` table shows as both local and remote."""
    rows = re.findall(r"^\s*`?(\d{14})`?\s*\|\s*`?(\d{14})`?\s*\|", output, flags=re.MULTILINE)
    return [local for local, remote in rows if local == remote]


def test_after_payguard_deploy_the_cli_sees_everything_applied(
    cluster, fresh_database, interop_project, supabase_cli
):
    """On a clone of the template, which payguard deploy built: deploy applies the two
    migrations the template lacks, and the CLI finds every migration applied."""
    report = deploy(cluster.admin_url(fresh_database), interop_project)
    assert [step.name for step in report.steps] == [
        "20991231000000_interop_tricky.sql",
        "20991231000100_interop_crlf.sql",
    ]
    url = cluster.url(fresh_database)
    versions = [m.version for m in load_migrations(interop_project.migrations_dir)]

    # Both leave the database as it is: run at once.
    with ThreadPoolExecutor(2) as pool:
        listing = pool.submit(
            supabase_cli, "migration", "list", "--db-url", url, workdir=interop_project.root
        )
        pushing = pool.submit(
            supabase_cli, "db", "push", "--db-url", url, "--yes", workdir=interop_project.root
        )
        listed, pushed = listing.result(), pushing.result()
    assert listed.returncode == 0, listed.stderr
    assert applied_in_migration_list(listed.stdout) == versions

    assert pushed.returncode == 0, pushed.stderr
    assert "Remote database is up to date." in pushed.stdout + pushed.stderr


@pytest.fixture(scope="module")
def pushed_by_the_cli(cluster, interop_project, supabase_cli) -> Iterator[str]:
    """The database as `supabase db push` leaves it, on top of the stand-in (which a real
    Supabase project already has); made once for the module, whose tests apply nothing to it."""
    name = f"payguard_interop_pushed_{os.getpid()}"
    recreate_database(cluster.admin_url(), name)
    try:
        with connect(cluster.admin_url(name)) as conn:
            apply_standin(conn)
        pushed = supabase_cli(
            "db", "push", "--db-url", cluster.url(name), "--yes", workdir=interop_project.root
        )
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        for path in sorted(interop_project.migrations_dir.glob("*.sql")):
            assert f"Applying migration {path.name}" in pushed.stdout + pushed.stderr
        yield cluster.admin_url(name)
    finally:
        drop_database(cluster.admin_url(), name)


def test_after_supabase_db_push_payguard_applies_nothing(pushed_by_the_cli, interop_project):
    report = deploy(pushed_by_the_cli, interop_project)
    assert report.steps == []
    assert report.already_applied == len(load_migrations(interop_project.migrations_dir))


def test_payguard_finds_an_edit_to_a_migration_the_cli_applied(
    pushed_by_the_cli, interop_project, tmp_path
):
    edited = Project(tmp_path / "edited")
    shutil.copytree(interop_project.root, edited.root)
    tricky = edited.migrations_dir / "20991231000000_interop_tricky.sql"
    tricky.write_text(TRICKY.replace("'a;b'", "'a;c'"))
    with pytest.raises(PayguardError, match=r"20991231000000_interop_tricky\.sql was edited"):
        deploy(pushed_by_the_cli, edited)
