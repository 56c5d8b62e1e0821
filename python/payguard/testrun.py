"""`payguard test`: pg_prove over tests/sql, then pytest over tests/py.

pgTAP files run in several pg_prove processes at once, each against a template clone of its
own and each taking its files one after another (every file is one transaction, rolled back),
so no two files ever share a database at the same time. The files are spread by their last
run's durations (kept in .payguard/pgtap-durations.json), longest first. pytest runs its
modules over pytest-xdist workers, each module whole on one worker (tests/py/conftest.py
groups them, and the money model's shards apart).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from payguard.cluster import APP_ROLE, Cluster
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.template import clone_template, drop_clone, ensure_template

PYTEST_NO_TESTS = 5
# The money model's seed and length (tests/py/test_money_model.py reads them).
MODEL_SEED_VARIABLE = "PAYGUARD_MODEL_SEED"
MODEL_STEPS_VARIABLE = "PAYGUARD_MODEL_STEPS"
DURATIONS_FILE = "pgtap-durations.json"
# pg_prove --timer: "[hh:mm:ss] tests/sql/x.test.sql .. ok      123 ms ( ... )"
_TIMED_LINE = re.compile(r"^\[[\d:]+\] (?P<file>\S+\.test\.sql) \.+.*?(?P<ms>\d+) ms")
_SUMMARY = re.compile(r"^Files=(?P<files>\d+), Tests=(?P<tests>\d+)")


def default_jobs() -> int:
    """Parallel pg_prove processes and pytest workers: one more than the processors, as the
    tests wait on the database and on sockets much of the time."""
    return (os.cpu_count() or 1) + 1


def prepare(project: Project) -> Cluster:
    """Start the embedded cluster and make its test template current. A fresh cluster's first
    deploy creates its roles, which belong to the whole cluster: deploys into two of its
    databases at once could both try to create them, so the template is made first, alone."""
    cluster = Cluster.for_project(project)
    cluster.start()
    ensure_template(cluster, project)
    return cluster


def run_tests(
    project: Project,
    *,
    sql: bool,
    py: bool,
    keyword: str | None,
    jobs: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
) -> int:
    """Run the suites in order, stopping at the first that fails; returns an exit code."""
    cluster = prepare(project)
    workers = jobs or default_jobs()
    if sql:
        files = pgtap_files(project, keyword)
        if files or not py:
            code = run_pgtap(project, cluster, files, keyword, jobs=workers)
            if code != 0:
                return code
    if py:
        return run_pytest(project, keyword, jobs=workers, seed=seed, steps=steps)
    return 0


def pgtap_files(project: Project, keyword: str | None) -> list[Path]:
    """The pgTAP files to run: all of them, or those whose path holds `keyword`."""
    files = sorted(project.sql_tests_dir.rglob("*.test.sql"))
    if keyword:
        files = [f for f in files if keyword in str(f.relative_to(project.sql_tests_dir))]
    return files


def spread(files: Sequence[str], durations: dict[str, float], jobs: int) -> list[list[str]]:
    """Files in at most `jobs` groups of about equal time: longest first, each to the group
    with the least time so far (a file never timed counts as the median, or 1 s). Each group
    keeps the files in path order, so a run reads like the sequential one."""
    known = sorted(durations[f] for f in files if f in durations)
    guess = known[len(known) // 2] if known else 1.0
    count = max(1, min(jobs, len(files)))
    groups: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(count)]
    for name in sorted(files, key=lambda f: -durations.get(f, guess)):
        index = min(range(len(groups)), key=lambda i: groups[i][0])
        total, members = groups[index]
        groups[index] = (total + durations.get(name, guess), [*members, name])
    return [sorted(members) for _, members in groups if members]


@dataclass
class _Prover:
    files: list[str]
    database: str
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)


def _read_durations(path: Path) -> dict[str, float]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}


def run_pgtap(
    project: Project, cluster: Cluster, files: list[Path], keyword: str | None, *, jobs: int = 1
) -> int:
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
    started = time.perf_counter()
    durations_file = project.state_dir / DURATIONS_FILE
    durations = _read_durations(durations_file)
    names = [str(f.relative_to(project.root)) for f in files]
    groups = spread(names, durations, jobs)
    provers: list[_Prover] = []
    try:
        for index, group in enumerate(groups):
            provers.append(_Prover(group, clone_template(cluster, f"sql{index}")[0]))
        print(
            f"pgTAP: {len(names)} files over {len(provers)} pg_prove processes, "
            "each with a database of its own",
            flush=True,
        )
        port = str(cluster.port())
        readers = []
        for prover in provers:
            prover.process = subprocess.Popen(
                [
                    "pg_prove",
                    "--host",
                    str(cluster.socket_dir),
                    "--port",
                    port,
                    "--username",
                    APP_ROLE,
                    "--dbname",
                    prover.database,
                    "--failures",
                    "--timer",
                    *prover.files,
                ],
                cwd=project.root,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            reader = threading.Thread(target=_collect, args=(prover,), daemon=True)
            reader.start()
            readers.append(reader)
        codes = []
        # Each process's report is printed whole once it ends, so that reports never interleave.
        for prover, reader in zip(provers, readers, strict=True):
            assert prover.process is not None
            codes.append(prover.process.wait())
            reader.join()
            sys.stdout.write("".join(prover.output))
            sys.stdout.flush()
    finally:
        for prover in provers:
            if prover.process is not None and prover.process.poll() is None:
                prover.process.kill()
                prover.process.wait()
            drop_clone(cluster, prover.database)
    _record_durations(durations_file, durations, provers)
    tests = sum(
        int(m["tests"]) for p in provers for line in p.output if (m := _SUMMARY.match(line))
    )
    failed = sum(1 for code in codes if code != 0)
    verdict = "FAIL" if failed else "PASS"
    print(
        f"pgTAP {verdict}: {len(names)} files, {tests} tests, {len(provers)} processes, "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return next((code for code in codes if code != 0), 0)


def _collect(prover: _Prover) -> None:
    assert prover.process is not None
    assert prover.process.stdout is not None
    for line in prover.process.stdout:
        prover.output.append(line)


def _record_durations(path: Path, durations: dict[str, float], provers: list[_Prover]) -> None:
    updated = dict(durations)
    for prover in provers:
        for line in prover.output:
            if m := _TIMED_LINE.match(line):
                updated[m["file"]] = int(m["ms"]) / 1000
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(updated, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass


def run_pytest(
    project: Project,
    keyword: str | None,
    *,
    jobs: int = 1,
    seed: int | None = None,
    steps: int | None = None,
) -> int:
    argv = [sys.executable, "-m", "pytest", str(project.py_tests_dir)]
    if jobs > 1:
        # tests/py/conftest.py groups the tests: each module whole, each model shard apart.
        argv += ["-n", str(jobs), "--dist", "loadgroup"]
    if keyword:
        argv += ["-k", keyword]
    env = {**os.environ, "PAYGUARD_PROJECT_DIR": str(project.root)}
    if seed is not None:
        env[MODEL_SEED_VARIABLE] = str(seed)
    if steps is not None:
        env[MODEL_STEPS_VARIABLE] = str(steps)
    code = subprocess.run(argv, cwd=project.root, env=env, check=False).returncode
    if code == PYTEST_NO_TESTS:
        print("pytest ran no tests: that is a failure", file=sys.stderr)
    return code
