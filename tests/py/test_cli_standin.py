"""`payguard standin install`: only the Supabase stand-in, into a plain database, so that the
Supabase CLI's `db push` applies the migrations there and payguard deploy then agrees."""

from __future__ import annotations

import json

import psycopg
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.errors import ExitCode
from payguard.migrations import load_migrations
from payguard.project import Project

runner = CliRunner()


def test_standin_install_then_supabase_db_push_then_deploy_agree(
    cluster: Cluster, empty_database: str, project: Project, supabase_cli
):
    admin = cluster.admin_url(empty_database)
    installed = runner.invoke(app, ["standin", "install", "--db-url", admin, "--json"])
    assert installed.exit_code == 0, installed.output
    assert json.loads(installed.output)["installed"] is True
    with psycopg.connect(admin) as conn:
        # The stand-in only: no migration, no history table yet.
        assert conn.execute(
            "select to_regnamespace('auth') is not null, "
            "to_regclass('supabase_migrations.schema_migrations'), to_regnamespace('private')"
        ).fetchone() == (True, None, None)
    again = runner.invoke(app, ["standin", "install", "--db-url", admin])
    assert again.exit_code == 0, again.output
    assert "already has an `auth` schema: nothing installed" in again.output

    pushed = supabase_cli(
        "db", "push", "--db-url", cluster.url(empty_database), "--yes", workdir=project.root
    )
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr

    deployed = runner.invoke(
        app, ["deploy", "--workdir", str(project.root), "--db-url", admin, "--json"]
    )
    assert deployed.exit_code == 0, deployed.output
    report = json.loads(deployed.output)
    assert report["steps"] == []
    assert report["already_applied"] == len(load_migrations(project.migrations_dir))


def test_standin_install_needs_a_superuser(cluster: Cluster, empty_database: str):
    result = runner.invoke(app, ["standin", "install", "--db-url", cluster.url(empty_database)])
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert "needs a superuser" in result.output
    with psycopg.connect(cluster.admin_url(empty_database)) as conn:
        assert conn.execute("select to_regnamespace('auth')").fetchone() == (None,)
