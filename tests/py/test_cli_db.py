"""`payguard db shell` (psql on the right URL) and `payguard db logs` (the server's log)."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.errors import ExitCode
from payguard.project import Project

PAYGUARD = Path(sys.executable).parent / "payguard"


def payguard(
    *args: str, project: Project, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [str(PAYGUARD), *args],
        capture_output=True,
        text=True,
        cwd=project.root,
        env={**base, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


WHO = ("--", "-Atc", "select current_user || ' ' || current_database()")


def test_db_shell_opens_psql_where_db_url_would_point(
    project: Project, cluster: Cluster, database: str
):
    given = cluster.socket_url("authenticator", database)
    # Each process only reads: run them at once.
    with ThreadPoolExecutor(4) as pool:
        runs = [
            pool.submit(payguard, "db", "shell", *args, project=project, env=env)
            for args, env in (
                (["--database", database, *WHO], None),
                (["--admin", *WHO], None),
                (["--db-url", given, *WHO], None),
                (list(WHO), {"DATABASE_URL": given}),
            )
        ]
        embedded, admin, by_url, by_env = (run.result() for run in runs)
    assert (embedded.returncode, embedded.stdout) == (0, f"postgres {database}\n"), embedded.stderr
    assert admin.stdout == f"{cluster.superuser} postgres\n", admin.stderr
    assert by_url.stdout == f"authenticator {database}\n", by_url.stderr
    assert by_env.stdout == f"authenticator {database}\n", by_env.stderr


def test_db_shell_refuses_a_bad_name_or_url(project: Project):
    with ThreadPoolExecutor(2) as pool:
        results = list(
            pool.map(
                lambda args: payguard("db", "shell", *args, project=project),
                (["--database", "no such"], ["--db-url", "not a url"]),
            )
        )
    for result in results:
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr


def test_db_logs_prints_the_last_lines(project: Project, cluster: Cluster):
    """In process: what is printed, not the process, is tested here."""
    before = len(cluster.log_file.read_text(errors="replace").splitlines())
    result = CliRunner().invoke(app, ["--workdir", str(project.root), "db", "logs", "-n", "3"])
    after = cluster.log_file.read_text(errors="replace").splitlines()
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    assert len(printed) == 3
    # The last three lines when it ran (the server may have logged more since).
    assert any(after[end - 3 : end] == printed for end in range(before, len(after) + 1))


def test_db_logs_follow_prints_what_the_server_logs_next(project: Project, cluster: Cluster):
    marker = f"payguard_follow_{os.getpid()}_{time.monotonic_ns()}"
    with subprocess.Popen(
        [str(PAYGUARD), "db", "logs", "-n", "1", "--follow"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        try:
            assert follower.stdout is not None
            lines: queue.Queue[str] = queue.Queue()
            threading.Thread(
                target=lambda: [lines.put(line) for line in follower.stdout or ()], daemon=True
            ).start()
            last = lines.get(timeout=60)  # the last line so far: it now follows
            assert marker not in last
            # A failed login is logged with the role's name.
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(cluster.url().replace("postgres:postgres@", f"{marker}:x@", 1))
            seen = ""
            deadline = time.monotonic() + 30
            while marker not in seen and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    seen += lines.get(timeout=1)
            assert marker in seen
        finally:
            follower.terminate()
            follower.wait(timeout=10)
