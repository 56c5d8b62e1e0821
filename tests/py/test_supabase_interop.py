"""payguard deploy and the Supabase CLI agree on which migrations are applied, both ways."""

from __future__ import annotations

import re
import shutil

import pytest

from payguard.db import connect
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.migrations import load_migrations
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


@pytest.fixture
def interop_project(scratch_project, project, write_migration):
    """The project's own migrations, plus one with tricky statements after them."""
    for migration in load_migrations(project.migrations_dir):
        shutil.copy(migration.path, scratch_project.migrations_dir / migration.path.name)
    write_migration("20991231000000_interop_tricky", TRICKY)
    # Windows line endings: the CLI keeps the carriage returns in the stored statements.
    crlf = scratch_project.migrations_dir / "20991231000100_interop_crlf.sql"
    crlf.write_bytes(b"-- crlf\r\ncreate table public.interop_crlf (\r\n  id int\r\n);\r\n")
    return scratch_project


def applied_in_migration_list(output: str) -> list[str]:
    """Versions the `migration list` table shows as both local and remote."""
    rows = re.findall(r"^\s*`?(\d{14})`?\s*\|\s*`?(\d{14})`?\s*\|", output, flags=re.MULTILINE)
    return [local for local, remote in rows if local == remote]


def test_after_payguard_deploy_the_cli_sees_everything_applied(
    cluster, empty_database, interop_project, supabase_cli
):
    deploy(cluster.admin_url(empty_database), interop_project)
    url = cluster.url(empty_database)
    versions = [m.version for m in load_migrations(interop_project.migrations_dir)]

    listed = supabase_cli("migration", "list", "--db-url", url, workdir=interop_project.root)
    assert listed.returncode == 0, listed.stderr
    assert applied_in_migration_list(listed.stdout) == versions

    pushed = supabase_cli("db", "push", "--db-url", url, "--yes", workdir=interop_project.root)
    assert pushed.returncode == 0, pushed.stderr
    assert "Remote database is up to date." in pushed.stdout + pushed.stderr


@pytest.fixture
def pushed_by_the_cli(cluster, empty_database, interop_project, supabase_cli):
    """The database as `supabase db push` leaves it, on top of the stand-in (which a real
    Supabase project already has)."""
    with connect(cluster.admin_url(empty_database)) as conn:
        apply_standin(conn)
    pushed = supabase_cli(
        "db", "push", "--db-url", cluster.url(empty_database), "--yes", workdir=interop_project.root
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    for path in sorted(interop_project.migrations_dir.glob("*.sql")):
        assert f"Applying migration {path.name}" in pushed.stdout + pushed.stderr
    return cluster.admin_url(empty_database)


def test_after_supabase_db_push_payguard_applies_nothing(pushed_by_the_cli, interop_project):
    report = deploy(pushed_by_the_cli, interop_project)
    assert report.steps == []
    assert report.already_applied == len(load_migrations(interop_project.migrations_dir))


def test_payguard_finds_an_edit_to_a_migration_the_cli_applied(pushed_by_the_cli, interop_project):
    tricky = interop_project.migrations_dir / "20991231000000_interop_tricky.sql"
    tricky.write_text(TRICKY.replace("'a;b'", "'a;c'"))
    with pytest.raises(PayguardError, match=r"20991231000000_interop_tricky\.sql was edited"):
        deploy(pushed_by_the_cli, interop_project)
