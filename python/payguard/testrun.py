"""`payguard test`: pg_prove over tests/sql, then pytest over tests/py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from payguard.cluster import APP_ROLE, Cluster
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.template import clone_template, drop_clone, ensure_template

PYTEST_NO_TESTS = 5


def run_tests(project: Project, *, sql: bool, py: bool, keyword: str | None) -> int:
    """Run the suites in order, stopping at the first that fails; returns an exit code."""
    cluster = Cluster.for_project(project)
    cluster.start()
    ensure_template(cluster, project)
    if sql:
        files = pgtap_files(project, keyword)
        if files or not py:
            code = run_pgtap(project, cluster, files, keyword)
            if code != 0:
                return code
    if py:
        return run_pytest(project, keyword)
    return 0


def pgtap_files(project: Project, keyword: str | None) -> list[Path]:
    """The pgTAP files to run: all of them, or those whose path holds `keyword`."""
    files = sorted(project.sql_tests_dir.rglob("*.test.sql"))
    if keyword:
        files = [f for f in files if keyword in str(f.relative_to(project.sql_tests_dir))]
    return files


def run_pgtap(project: Project, cluster: Cluster, files: list[Path], keyword: str | None) -> int:
    if shutil.which("pg_prove") is None:
        raise PayguardError(
            "pg_prove not found; run `make setup` or `apt-get install "
            "libtap-parser-sourcehandler-pgtap-perl`"
        )
    if not files:
        raise PayguardError(
            f"no pgTAP tests (*.test.sql) under {project.sql_tests_dir}"
            + (f" matching {keyword!r}" if keyword else "")
        )
    database, _ = clone_template(cluster, "sql")
    try:
        port = cluster.port()
        result = subprocess.run(
            [
                "pg_prove",
                "--host",
                str(cluster.socket_dir),
                "--port",
                str(port),
                "--username",
                APP_ROLE,
                "--dbname",
                database,
                "--failures",
                *[str(f.relative_to(project.root)) for f in files],
            ],
            cwd=project.root,
            check=False,
        )
        return result.returncode
    finally:
        drop_clone(cluster, database)


def run_pytest(project: Project, keyword: str | None) -> int:
    argv = [sys.executable, "-m", "pytest", str(project.py_tests_dir)]
    if keyword:
        argv += ["-k", keyword]
    env = {**os.environ, "PAYGUARD_PROJECT_DIR": str(project.root)}
    code = subprocess.run(argv, cwd=project.root, env=env, check=False).returncode
    if code == PYTEST_NO_TESTS:
        print("pytest ran no tests: that is a failure", file=sys.stderr)
    return code
