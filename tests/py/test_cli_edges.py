"""The CLI's edges: every error is one line on stderr with its exit code and no traceback,
JSON under --json; --version, -h, completion, --workdir anywhere.

Each case that once printed a traceback runs the real `payguard` executable, since the
in-process runner hides what reaches a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster, free_port
from payguard.errors import ExitCode
from payguard.project import Project
from payguard.reconcile import CHECKS

PAYGUARD = Path(sys.executable).parent / "payguard"
AUDIT_COMMANDS = ("verify", "anchor", "seal", "purge")
runner = CliRunner()


def payguard(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed executable as a user would, without the caller's DATABASE_URL."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PAYGUARD_DEBUG")}
    return subprocess.run(
        [str(PAYGUARD), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert the run failed with `code` and one `error:` line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture
def unreachable_url() -> str:
    """A URL whose port nothing listens on."""
    return f"postgresql://postgres:secret@127.0.0.1:{free_port()}/postgres"


@pytest.mark.parametrize(
    "command",
    [["describe"], ["deploy"], ["reconcile"], ["audit", "verify"], ["policies", "check"]],
)
def test_a_db_url_that_is_not_a_url_is_a_usage_error(command, project):
    line = one_error_line(
        payguard(*command, "--db-url", "not a url", cwd=project.root), ExitCode.USAGE
    )
    assert "--db-url is not a PostgreSQL URL" in line
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in line


def test_a_bad_database_url_from_the_environment_is_named_as_such(project):
    line = one_error_line(
        payguard("describe", cwd=project.root, env={"DATABASE_URL": "not a url"}), ExitCode.USAGE
    )
    assert "$DATABASE_URL is not a PostgreSQL URL" in line


@pytest.mark.parametrize("command", AUDIT_COMMANDS)
def test_every_audit_command_on_an_unreachable_database(command, project, unreachable_url):
    line = one_error_line(
        payguard("audit", command, "--db-url", unreachable_url, cwd=project.root),
        ExitCode.DATABASE,
    )
    assert "Connection refused" in line
    assert ":***@" in line
    assert "secret" not in line
    # Not the embedded cluster: starting it would not help.
    assert "payguard db start" not in line
    assert "check --db-url" in line


def test_the_reason_libpq_gives_is_kept(cluster: Cluster, database: str):
    wrong = cluster.url(database).replace(":postgres@", ":wrong@", 1)
    result = runner.invoke(app, ["describe", "--db-url", wrong])
    assert result.exit_code == ExitCode.DATABASE
    assert 'password authentication failed for user "postgres"' in result.output
    assert "payguard db start" not in result.output


@pytest.mark.parametrize("command", [["reconcile"], ["audit", "verify"]])
def test_an_empty_database_is_not_deployed(command, cluster: Cluster, empty_database, project):
    url = cluster.admin_url(empty_database)
    line = one_error_line(payguard(*command, "--db-url", url, cwd=project.root), ExitCode.DATABASE)
    assert "is not deployed" in line
    assert "run `payguard deploy`" in line


@pytest.mark.parametrize(
    "command", [["policies", "check"], ["policies", "matrix", "--check"], ["stripe", "recover"]]
)
def test_other_commands_that_need_payguard_deployed_say_so(
    command, cluster: Cluster, empty_database, project
):
    result = runner.invoke(app, [*command, "--db-url", cluster.admin_url(empty_database)])
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert "is not deployed" in result.output


def test_under_json_an_error_is_json_on_stderr(cluster: Cluster, empty_database, project):
    url = cluster.admin_url(empty_database)
    result = payguard("reconcile", "--json", "--db-url", url, cwd=project.root)
    assert result.returncode == ExitCode.DATABASE
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    error = json.loads(line)["error"]
    assert error["code"] == ExitCode.DATABASE
    assert "is not deployed" in error["message"]
    # Usage errors too, found by click before the command runs.
    result = payguard("describe", "--json", "--no-such-option", cwd=project.root)
    assert result.returncode == ExitCode.USAGE
    assert json.loads(result.stderr)["error"]["code"] == ExitCode.USAGE


def test_db_reset_with_a_bad_name_creates_nothing(project, cluster: Cluster):
    names = {
        "bad name": "'bad name' would need quoting",
        "Upper": "would need quoting",
        "1st": "would need quoting",
        "a-b": "would need quoting",
        "select": "is an SQL keyword",
        "x" * 64: "is 64 bytes long; PostgreSQL keeps 63",
        "é" * 32: "is 64 bytes long",
    }
    line = one_error_line(
        payguard("db", "reset", "--database", "bad name", cwd=project.root), ExitCode.USAGE
    )
    assert names["bad name"] in line
    for name, reason in names.items():
        result = runner.invoke(app, ["db", "reset", "--database", name, "--no-seed"])
        assert result.exit_code == ExitCode.USAGE, (name, result.output)
        assert reason in result.output, (name, result.output)
    # Other tests create and drop databases meanwhile: look for these names (as PostgreSQL
    # would have truncated them), not for an unchanged list.
    with psycopg.connect(cluster.admin_url(), autocommit=True) as conn:
        created = conn.execute(
            "select datname from pg_database where datname = any(%s)",
            ([*names, *(n.encode()[:63].decode(errors="ignore") for n in names)],),
        ).fetchall()
    assert created == []


def test_an_sql_error_is_one_line_with_its_sqlstate(cluster: Cluster, database: str, project):
    """authenticator may log in but not read the audit log: psycopg's error reaches the
    boundary."""
    url = cluster.socket_url("authenticator", database)
    line = one_error_line(
        payguard("audit", "verify", "--db-url", url, cwd=project.root), ExitCode.DATABASE
    )
    assert line.startswith("error: database error: SQLSTATE 42501: permission denied"), line


def test_an_unexpected_exception_is_an_internal_error(
    scratch_project: Project, cluster: Cluster, empty_database
):
    (scratch_project.supabase_dir / "config.toml").write_text("[db\nbroken")
    args = (
        "deploy",
        "--workdir",
        str(scratch_project.root),
        "--seed",
        "--db-url",
        cluster.admin_url(empty_database),
    )
    line = one_error_line(payguard(*args, cwd=scratch_project.root), ExitCode.INTERNAL)
    assert line.startswith("error: internal error: TOMLDecodeError: ")
    assert "rerun with PAYGUARD_DEBUG=1" in line
    debug = payguard(*args, cwd=scratch_project.root, env={"PAYGUARD_DEBUG": "1"})
    assert debug.returncode == ExitCode.INTERNAL
    assert "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line


def test_version_help_and_completion(project):
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0
    assert version.output.startswith("payguard ")
    for args in (["-h"], ["db", "-h"], ["db", "status", "-h"], ["policies", "check", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage:" in result.output
    shown = payguard("--help", cwd=project.root)
    assert "--install-completion" in shown.stdout
    assert "--show-completion" in shown.stdout
    completion = payguard("--show-completion", "bash", cwd=project.root, env={"SHELL": "/bin/bash"})
    assert completion.returncode == 0, completion.stderr
    assert "_PAYGUARD_COMPLETE" in completion.stdout


def test_workdir_after_the_subcommand_as_before_it(scratch_project: Project, tmp_path: Path):
    workdir = str(scratch_project.root)
    elsewhere = {"cwd": tmp_path}  # not inside any project
    before = runner.invoke(app, ["--workdir", workdir, "db", "status"])
    after = runner.invoke(app, ["db", "status", "--workdir", workdir])
    equals = runner.invoke(app, ["db", "status", f"--workdir={workdir}"])
    assert before.output == after.output == equals.output == "stopped (not created yet)\n"
    # A stopped cluster is exit 3, as is any database that cannot be used.
    assert before.exit_code == after.exit_code == equals.exit_code == ExitCode.DATABASE
    result = payguard("db", "status", "--json", "--workdir", workdir, **elsewhere)
    assert result.returncode == ExitCode.DATABASE
    assert json.loads(result.stdout)["running"] is False


def test_every_reporting_command_takes_the_one_json_option():
    from typer.main import get_command

    root = get_command(app)
    # Commands are looked up as the root looks them up when they run (each module loaded then).
    context = typer.Context(root)
    reporting = [
        ("deploy",),
        ("describe",),
        ("reconcile",),
        ("bench",),
        ("db", "start"),
        ("db", "stop"),
        ("db", "status"),
        ("db", "destroy"),
        ("db", "url"),
        ("db", "reset"),
        ("policies", "check"),
        ("policies", "generate"),
        ("policies", "matrix"),
        ("audit", "verify"),
        ("audit", "anchor"),
        ("audit", "seal"),
        ("audit", "purge"),
        ("users", "erase"),
        ("retention", "purge"),
        ("stripe", "start"),
        ("stripe", "stop"),
        ("stripe", "status"),
        ("stripe", "recover"),
        ("functions", "serve"),
        ("functions", "stop"),
        ("functions", "status"),
        ("standin", "install"),
        ("keys", "new"),
        ("keys", "check"),
    ]
    helps = set()
    for path in reporting:
        command = root
        for name in path:
            found = command.get_command(context, name)  # type: ignore[attr-defined]
            assert found is not None, path
            command = found
        [option] = [p for p in command.params if "--json" in p.opts]
        helps.add(option.help)
    assert len(helps) == 1, helps


def test_reconcile_json_lists_structured_findings_and_the_checks_run(
    record_books, database: str, cluster: Cluster
):
    books = record_books(database)
    clean = runner.invoke(app, ["reconcile", "--json", "--db-url", books["admin"]])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output) == {
        "ok": True,
        "checks_run": {"database": len(CHECKS), "stripe": 0, "total": len(CHECKS)},
        "count": 0,
        "differences": [],
    }
    with psycopg.connect(books["admin"], autocommit=True) as conn:
        conn.execute(
            "update public.payment_transactions set amount_minor = 29999 "
            "where processor_transaction_id = 'pi_1Books'"
        )
    found = runner.invoke(app, ["reconcile", "--json", "--db-url", books["admin"]])
    assert found.exit_code == ExitCode.FINDING, found.output
    report = json.loads(found.output)
    assert (report["ok"], report["count"]) == (False, 1)
    assert report["differences"] == [
        {
            "check": "funded milestone payment without its processor transaction",
            "source": "database",
            "subject": str(books["payments"][1]),
            "ids": [str(books["payments"][1])],
        }
    ]


def test_test_prepare_starts_the_cluster_and_makes_the_template_current_running_nothing(
    project: Project, cluster: Cluster
):
    from payguard.template import TEMPLATE, fingerprint

    result = runner.invoke(app, ["--workdir", str(project.root), "test", "--prepare"])
    assert result.exit_code == 0, result.output
    assert "pgTAP" not in result.output
    assert "passed" not in result.output
    assert cluster.status().running
    with psycopg.connect(cluster.admin_url()) as conn:
        row = conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
            (TEMPLATE,),
        ).fetchone()
    assert row == (fingerprint(project),)
