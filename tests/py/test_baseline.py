"""The squashed history: the baseline migrations deploy a new database, and a database deployed
from the history before the baseline gets a clear refusal that names the procedure, from
payguard deploy, from the baseline itself, and from the Supabase CLI, with nothing applied."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from payguard.databases import drop_database, recreate_database
from payguard.db import connect
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.migrations import ensure_history_table, load_migrations
from payguard.project import Project
from payguard.standin import apply_standin

# Versions of the history before the baseline (its first and last migrations).
OLD_VERSIONS = [("20261126060000", "default_privileges"), ("20261205076000", "payout_canceled")]


def _schema_present(url: str) -> bool:
    with connect(url) as conn:
        row = conn.execute("select to_regnamespace('private') is not null").fetchone()
        return bool(row and row[0])


@pytest.fixture(scope="module")
def old_history_database(cluster) -> Iterator[str]:
    """The name of a database whose history holds migrations of the squashed history, made
    once for the module: the tests on it refuse to apply anything to it."""
    name = f"payguard_old_history_{os.getpid()}"
    recreate_database(cluster.admin_url(), name)
    yield name
    drop_database(cluster.admin_url(), name)


@pytest.fixture(scope="module")
def deployed_before_the_baseline(cluster, old_history_database) -> str:
    """A database whose history holds migrations of the squashed history; its admin URL."""
    url = cluster.admin_url(old_history_database)
    with connect(url) as conn:
        apply_standin(conn)
        conn.execute("set role postgres")
        ensure_history_table(conn)
        for version, name in OLD_VERSIONS:
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version, name, statements) "
                "values (%s, %s, '{}')",
                (version, name),
            )
    return url


# The domains whose schema file was added after the baseline: their objects come from the
# migrations that added them, never from a baseline migration.
ADDED_AFTER_BASELINE = ("incident_controls", "ledger_corrections", "setting_changes")


def test_the_baseline_is_the_whole_history(project: Project) -> None:
    migrations = load_migrations(project.migrations_dir)
    domains = [m.name for m in migrations if m.version < "20261205090000"]
    config = (project.supabase_dir / "config.toml").read_text()
    listed = [
        line.strip().strip('",').removeprefix("./schemas/").removesuffix(".sql")
        for line in config.splitlines()
        if line.strip().startswith('"./schemas/')
    ]
    assert set(ADDED_AFTER_BASELINE) <= set(listed), "each domain added later is listed"
    assert domains == [d for d in listed if d not in ADDED_AFTER_BASELINE], (
        "one baseline migration per schema file of the baseline, in the same order"
    )


def test_deploy_refuses_a_database_deployed_from_the_old_history(
    deployed_before_the_baseline: str, project: Project
) -> None:
    with pytest.raises(PayguardError) as refused:
        deploy(deployed_before_the_baseline, project)
    message = str(refused.value)
    assert "before the baseline" in message
    assert "20261126060000" in message
    assert "20261205076000" in message
    assert "docs/schema-changes.md" in message
    assert not _schema_present(deployed_before_the_baseline), "nothing may be applied"


def test_the_baseline_refuses_a_database_that_already_holds_the_schema(
    cluster, deployed_database, project: Project
) -> None:
    """Its history lost (say, repaired as reverted), the baseline is not applied over it."""
    url = cluster.admin_url(deployed_database)
    assert deploy(url, project).steps == [], "deployed: the history holds every migration"
    with connect(url) as conn:
        conn.execute("delete from supabase_migrations.schema_migrations")
    with pytest.raises(PayguardError) as refused:
        deploy(url, project)
    assert "deployed from the migration history before the baseline" in str(refused.value)
    with connect(url) as conn:
        row = conn.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()
        assert row == (0,), "the refused baseline recorded nothing"


def test_a_fresh_database_gets_the_baseline(cluster, empty_database, project: Project) -> None:
    url = cluster.admin_url(empty_database)
    report = deploy(url, project)
    applied = [s.name for s in report.steps if s.kind == "migration"]
    assert applied == [m.file_name for m in load_migrations(project.migrations_dir)]
    assert _schema_present(url)


def test_the_supabase_cli_refuses_to_push_over_the_old_history(
    deployed_before_the_baseline: str, cluster, old_history_database, project: Project, supabase_cli
) -> None:
    pushed = supabase_cli(
        "db", "push", "--db-url", cluster.url(old_history_database), "--yes", workdir=project.root
    )
    assert pushed.returncode != 0
    assert "20261126060000" in pushed.stdout + pushed.stderr
    assert not _schema_present(deployed_before_the_baseline)
