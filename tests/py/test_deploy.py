"""payguard deploy: applies pending migrations once, in order, and refuses a history that no
longer matches the files, before anything is applied."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.deploy import MigrationError, deploy
from payguard.errors import PayguardError
from payguard.project import Project

FIRST = "20260101000000_first"
SECOND = "20260102000000_second"
THIRD = "20260103000000_third"


def history(cluster: Cluster, database: str) -> list[tuple[str, str, list[str]]]:
    with psycopg.connect(cluster.admin_url(database)) as conn:
        exists = conn.execute(
            "select to_regclass('supabase_migrations.schema_migrations') is not null"
        ).fetchone()
        if not (exists and exists[0]):
            return []
        return conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations "
            "order by version"
        ).fetchall()


def table_exists(cluster: Cluster, database: str, name: str) -> bool:
    with psycopg.connect(cluster.admin_url(database)) as conn:
        row = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()
        return bool(row and row[0])


@pytest.fixture
def two_migrations(write_migration):
    write_migration(FIRST, "create table public.first (id int primary key);\n")
    write_migration(
        SECOND,
        "-- second\ncreate table public.second (id int primary key);\n"
        "insert into public.second values (1);\n",
    )


def test_applies_migrations_in_order_and_records_them_as_the_cli_does(
    cluster, empty_database, scratch_project, two_migrations
):
    report = deploy(cluster.admin_url(empty_database), scratch_project)
    assert [s.name for s in report.applied] == [f"{FIRST}.sql", f"{SECOND}.sql"]
    assert history(cluster, empty_database) == [
        ("20260101000000", "first", ["create table public.first (id int primary key)"]),
        (
            "20260102000000",
            "second",
            [
                "-- second\ncreate table public.second (id int primary key)",
                "insert into public.second values (1)",
            ],
        ),
    ]


def test_installs_the_stand_in_and_runs_migrations_as_postgres(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "create table public.owned (id int);\n")
    report = deploy(cluster.admin_url(empty_database), scratch_project)
    assert [s.kind for s in report.steps] == ["standin", "migration"]
    with psycopg.connect(cluster.admin_url(empty_database)) as conn:
        owner = conn.execute(
            "select pg_get_userbyid(relowner) from pg_class where oid = 'public.owned'::regclass"
        ).fetchone()
        history_owner = conn.execute(
            "select pg_get_userbyid(relowner) from pg_class "
            "where oid = 'supabase_migrations.schema_migrations'::regclass"
        ).fetchone()
    assert owner == ("postgres",)
    assert history_owner == ("postgres",)


def test_a_second_run_is_a_no_op(cluster, empty_database, scratch_project, two_migrations):
    url = cluster.admin_url(empty_database)
    deploy(url, scratch_project)
    before = history(cluster, empty_database)
    again = deploy(url, scratch_project)
    assert again.steps == []
    assert again.already_applied == 2
    assert history(cluster, empty_database) == before


def test_dry_run_changes_nothing(cluster, empty_database, scratch_project, two_migrations):
    report = deploy(cluster.admin_url(empty_database), scratch_project, dry_run=True)
    assert [(s.kind, s.status) for s in report.steps] == [
        ("standin", "pending"),
        ("migration", "pending"),
        ("migration", "pending"),
    ]
    assert history(cluster, empty_database) == []
    assert not table_exists(cluster, empty_database, "public.first")
    with psycopg.connect(cluster.admin_url(empty_database)) as conn:
        assert conn.execute("select to_regnamespace('auth')").fetchone() == (None,)


def test_refuses_an_edited_migration_and_applies_nothing(
    cluster, empty_database, scratch_project, two_migrations, write_migration
):
    url = cluster.admin_url(empty_database)
    deploy(url, scratch_project)
    write_migration(SECOND, "-- second\ncreate table public.second (id bigint primary key);\n")
    write_migration(THIRD, "create table public.third (id int);\n")
    with pytest.raises(PayguardError, match=rf"{SECOND}\.sql was edited after it was applied"):
        deploy(url, scratch_project)
    assert not table_exists(cluster, empty_database, "public.third")
    assert len(history(cluster, empty_database)) == 2


def test_refuses_a_deleted_migration_and_applies_nothing(
    cluster, empty_database, scratch_project, two_migrations, write_migration
):
    url = cluster.admin_url(empty_database)
    deploy(url, scratch_project)
    (scratch_project.migrations_dir / f"{FIRST}.sql").unlink()
    write_migration(THIRD, "create table public.third (id int);\n")
    with pytest.raises(PayguardError, match=rf"{FIRST}\.sql was applied but its file is gone"):
        deploy(url, scratch_project)
    assert not table_exists(cluster, empty_database, "public.third")


def test_refuses_a_new_migration_older_than_the_newest_applied(
    cluster, empty_database, scratch_project, write_migration
):
    url = cluster.admin_url(empty_database)
    write_migration(SECOND, "create table public.second (id int);\n")
    deploy(url, scratch_project)
    write_migration(FIRST, "create table public.first (id int);\n")
    write_migration(THIRD, "create table public.third (id int);\n")
    with pytest.raises(PayguardError, match=rf"{FIRST}\.sql is older than the newest applied"):
        deploy(url, scratch_project)
    assert not table_exists(cluster, empty_database, "public.first")
    assert not table_exists(cluster, empty_database, "public.third")


def test_a_failing_migration_is_rolled_back_whole_and_named_with_its_line(
    cluster, empty_database, scratch_project, write_migration
):
    url = cluster.admin_url(empty_database)
    write_migration(FIRST, "create table public.first (id int);\n")
    write_migration(
        SECOND,
        "-- creates a table, then fails\n"
        "create table public.half (id int);\n"
        "insert into public.half values (1);\n"
        "\n"
        "select\n"
        "  1 / 0;\n",
    )
    write_migration(THIRD, "create table public.third (id int);\n")
    with pytest.raises(MigrationError) as failure:
        deploy(url, scratch_project)
    message = str(failure.value)
    assert message.startswith(f"{SECOND}.sql:5: division by zero (SQLSTATE 22012)")
    assert not table_exists(cluster, empty_database, "public.half")
    assert not table_exists(cluster, empty_database, "public.third")
    assert [v for v, _, _ in history(cluster, empty_database)] == ["20260101000000"]


def test_a_syntax_error_names_the_line_of_the_error(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(
        FIRST,
        "create table public.ok (id int);\n\n"
        "create table public.bad (\n  id int,\n  oops oops oops\n);\n",
    )
    with pytest.raises(MigrationError, match=rf"^{FIRST}\.sql:5: syntax error"):
        deploy(cluster.admin_url(empty_database), scratch_project)
    assert not table_exists(cluster, empty_database, "public.ok")


def test_a_migration_that_needs_a_superuser_fails_as_on_supabase(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "alter role anon bypassrls;\n")
    with pytest.raises(MigrationError, match="must be superuser to change bypassrls attribute"):
        deploy(cluster.admin_url(empty_database), scratch_project)
    with psycopg.connect(cluster.admin_url(empty_database)) as conn:
        row = conn.execute("select rolbypassrls from pg_roles where rolname = 'anon'").fetchone()
    assert row == (False,)


def test_a_non_superuser_cannot_install_the_stand_in(
    cluster, empty_database, scratch_project, two_migrations
):
    with pytest.raises(PayguardError, match="installing the local stand-in needs a superuser"):
        deploy(cluster.url(empty_database), scratch_project)
    assert history(cluster, empty_database) == []


def test_seed_runs_once_as_the_cli_runs_it(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "create table public.seeded (n int);\n")
    scratch_project.seed_file.write_text("insert into public.seeded values (1);\n")
    url = cluster.admin_url(empty_database)
    first = deploy(url, scratch_project, seed=True)
    second = deploy(url, scratch_project, seed=True)
    assert [(s.kind, s.status) for s in first.steps][-1] == ("seed", "applied")
    assert [(s.kind, s.status) for s in second.steps] == [("seed", "skipped")]
    # A changed seed file is not run again: only its recorded hash changes, as in the CLI.
    scratch_project.seed_file.write_text("insert into public.seeded values (2);\n")
    third = deploy(url, scratch_project, seed=True)
    assert [(s.kind, s.status) for s in third.steps] == [("seed", "recorded")]
    assert [(s.kind, s.status) for s in deploy(url, scratch_project, seed=True).steps] == [
        ("seed", "skipped")
    ]
    with psycopg.connect(url) as conn:
        assert conn.execute("select n from public.seeded").fetchall() == [(1,)]


def test_seed_files_come_from_config_toml(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "create table public.seeded (n int);\n")
    config = scratch_project.supabase_dir / "config.toml"
    config.write_text(
        config.read_text().replace('sql_paths = ["./seed.sql"]', 'sql_paths = ["./seeds/*.sql"]')
    )
    seeds = scratch_project.supabase_dir / "seeds"
    seeds.mkdir()
    (seeds / "01_one.sql").write_text("insert into public.seeded values (1);\n")
    (seeds / "02_two.sql").write_text("insert into public.seeded values (2);\n")
    scratch_project.seed_file.write_text("insert into public.seeded values (99);\n")
    report = deploy(cluster.admin_url(empty_database), scratch_project, seed=True)
    assert [s.name for s in report.steps if s.kind == "seed"] == [
        "supabase/seeds/01_one.sql",
        "supabase/seeds/02_two.sql",
    ]
    with psycopg.connect(cluster.admin_url(empty_database)) as conn:
        assert conn.execute("select n from public.seeded order by n").fetchall() == [(1,), (2,)]


def test_rejects_a_misnamed_migration_file(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration("2026_first", "select 1;\n")
    with pytest.raises(PayguardError, match=r"must be named <14-digit UTC timestamp>_<name>\.sql"):
        deploy(cluster.admin_url(empty_database), scratch_project)


def test_cli_prints_one_line_per_migration_with_its_time(
    cluster, empty_database, scratch_project, two_migrations
):
    runner = CliRunner()
    args = [
        "--workdir",
        str(scratch_project.root),
        "deploy",
        "--db-url",
        cluster.admin_url(empty_database),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert re.fullmatch(rf"\s*applied\s+migration {FIRST}\.sql\s+[0-9.]+ ms", lines[1])
    assert re.fullmatch(rf"\s*applied\s+migration {SECOND}\.sql\s+[0-9.]+ ms", lines[2])
    assert lines[-1] == "deployed 2 migrations (0 were applied before)"

    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["steps"] == []


def test_cli_turns_a_failing_migration_into_one_error_line_and_exit_3(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "select 1 / 0;\n")
    result = CliRunner().invoke(
        app,
        [
            "--workdir",
            str(scratch_project.root),
            "deploy",
            "--db-url",
            cluster.admin_url(empty_database),
        ],
    )
    assert result.exit_code == 3
    assert f"error: {FIRST}.sql:1: division by zero" in result.output


def test_deploys_the_project_migrations_to_the_template(cluster, project: Project):
    """The template database holds every migration of the project."""
    from payguard.migrations import load_migrations
    from payguard.template import TEMPLATE

    applied = [v for v, _, _ in history(cluster, TEMPLATE)]
    assert applied == [m.version for m in load_migrations(project.migrations_dir)]


def test_dry_run_on_a_deployed_database_lists_only_what_is_pending(
    cluster, empty_database, scratch_project, two_migrations, write_migration
):
    url = cluster.admin_url(empty_database)
    deploy(url, scratch_project)
    write_migration(THIRD, "create table public.third (id int);\n")
    report = deploy(url, scratch_project, dry_run=True)
    assert [(s.kind, s.name, s.status) for s in report.steps] == [
        ("migration", f"{THIRD}.sql", "pending")
    ]
    assert report.already_applied == 2
    assert not table_exists(cluster, empty_database, "public.third")
    assert len(history(cluster, empty_database)) == 2


def test_refuses_a_migration_that_changes_its_role(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "create table public.first (id int);\n")
    write_migration(SECOND, "reset role;\nalter role anon bypassrls;\n")
    write_migration(THIRD, "set session authorization supabase_admin;\n")
    with pytest.raises(PayguardError) as refusal:
        deploy(cluster.admin_url(empty_database), scratch_project)
    assert f"{SECOND}.sql:1: migrations run as postgres and may not change role" in str(
        refusal.value
    )
    assert f"{THIRD}.sql:1: migrations run as postgres" in str(refusal.value)
    assert history(cluster, empty_database) == []


def test_a_role_reset_hidden_in_a_function_body_still_runs_as_postgres(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(
        FIRST, "do $$ begin execute 'reset role'; execute 'alter role anon bypassrls'; end $$;\n"
    )
    with pytest.raises(MigrationError, match="must be superuser to change bypassrls attribute"):
        deploy(cluster.admin_url(empty_database), scratch_project)


def test_honours_database_url(
    cluster, empty_database, scratch_project, two_migrations, monkeypatch
):
    monkeypatch.setenv("DATABASE_URL", cluster.admin_url(empty_database))
    result = CliRunner().invoke(app, ["--workdir", str(scratch_project.root), "deploy", "--json"])
    assert result.exit_code == 0, result.output
    assert [s["name"] for s in json.loads(result.output)["steps"]] == [
        "supabase stand-in",
        f"{FIRST}.sql",
        f"{SECOND}.sql",
    ]
    assert len(history(cluster, empty_database)) == 2


def test_refuses_transaction_control_inside_a_migration(
    cluster, empty_database, scratch_project, write_migration
):
    write_migration(FIRST, "create table public.first (id int);\n")
    write_migration(SECOND, "-- tx\nbegin;\ncreate table public.second (id int);\ncommit;\n")
    with pytest.raises(PayguardError) as refusal:
        deploy(cluster.admin_url(empty_database), scratch_project)
    assert f"{SECOND}.sql:1: each migration runs in a transaction of its own" in str(refusal.value)
    assert f"{SECOND}.sql:4: each migration" in str(refusal.value)
    assert not table_exists(cluster, empty_database, "public.first")


def test_a_concurrent_deploy_is_refused(cluster, empty_database, scratch_project, two_migrations):
    from payguard.deploy import DEPLOY_LOCK_KEY

    with psycopg.connect(cluster.admin_url(empty_database), autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(%s)", (DEPLOY_LOCK_KEY,))
        with pytest.raises(PayguardError, match="another payguard deploy is running"):
            deploy(cluster.admin_url(empty_database), scratch_project)
    assert history(cluster, empty_database) == []
