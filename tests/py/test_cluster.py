"""The embedded cluster's lifecycle, and the failures that each get a one-line error."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import APP_ROLE, Cluster, free_port
from payguard.cluster_memory import (
    MEMORY_ROOT,
    make_data,
    memory_root,
    private_parent,
    trusted_data,
)
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.server_user import give_to_server_user
from payguard.testing.clusters import scratch, scratch_base


@contextmanager
def squatter() -> Iterator[int]:
    """Another process's listener on a loopback port; yields the port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def scratch_cluster(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster not made yet, for a test of how one is made; deleted afterwards."""
    made = scratch(cluster, request.node.name[:40])
    yield made
    made.destroy()
    shutil.rmtree(made.base, ignore_errors=True)


@pytest.fixture(scope="module")
def made_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """One cluster, made once, for the module's tests of a cluster already made (each starts
    or stops it as it needs); deleted after the module."""
    made = scratch(cluster, "made")
    made.start()
    yield made
    made.destroy()
    shutil.rmtree(made.base, ignore_errors=True)


def test_start_is_idempotent_and_stop_too(made_cluster: Cluster):
    made_cluster.stop()
    assert not made_cluster.status().running
    first = made_cluster.start()
    second = made_cluster.start()
    assert first.running
    assert second.running
    assert first.pid == second.pid
    assert first.port == second.port
    with psycopg.connect(made_cluster.url()) as conn:
        assert conn.execute("select current_user").fetchone() == (APP_ROLE,)
    assert made_cluster.stop() is True
    assert made_cluster.stop() is False
    status = made_cluster.status()
    assert not status.running
    assert status.pid is None


def test_listens_on_loopback_and_a_private_socket_away_from_the_supabase_ports(
    made_cluster: Cluster,
):
    status = made_cluster.start()
    assert status.port not in (54320, 54322)
    with psycopg.connect(made_cluster.admin_url()) as conn:
        listen = conn.execute("show listen_addresses").fetchone()
        superuser = conn.execute(
            "select rolsuper from pg_roles where rolname = current_user"
        ).fetchone()
    assert listen == ("127.0.0.1",)
    assert superuser == (True,)
    assert (made_cluster.socket_dir / f".s.PGSQL.{status.port}").is_socket()
    assert oct(made_cluster.socket_dir.stat().st_mode & 0o777) == "0o700"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root must hand the server to postgres")
def test_as_root_the_server_runs_as_the_postgres_os_user(made_cluster: Cluster):
    status = made_cluster.start()
    assert status.pid is not None
    uid = Path(f"/proc/{status.pid}").stat().st_uid
    assert pwd.getpwuid(uid).pw_name == "postgres"
    assert pwd.getpwuid(made_cluster.data_dir.stat().st_uid).pw_name == "postgres"


def test_a_taken_port_is_a_clear_error(scratch_cluster: Cluster):
    with (
        squatter() as port,
        pytest.raises(PayguardError, match=rf"port {port} on 127.0.0.1 is already in use"),
    ):
        scratch_cluster.start(port)
    assert not scratch_cluster.status().running


def test_a_stale_pid_file_is_a_clear_error(made_cluster: Cluster):
    made_cluster.start()
    made_cluster.stop()
    with subprocess.Popen(["sleep", "30"]) as stranger:
        try:
            made_cluster.pid_file.write_text(f"{stranger.pid}\n{made_cluster.data_dir}\n")
            with pytest.raises(PayguardError, match=rf"stale pid file .* process {stranger.pid}"):
                made_cluster.start()
        finally:
            stranger.kill()
    made_cluster.pid_file.unlink()
    assert made_cluster.start().running


def test_a_cluster_of_another_major_version_is_a_clear_error(scratch_cluster: Cluster):
    scratch_cluster.data_dir.mkdir(parents=True)
    (scratch_cluster.data_dir / "PG_VERSION").write_text("16\n")
    with pytest.raises(PayguardError, match=r"is PostgreSQL 16, not 15; run `payguard db reset`"):
        scratch_cluster.start()


def test_missing_binaries_are_a_clear_error(scratch_cluster: Cluster, monkeypatch, tmp_path):
    monkeypatch.setenv("PAYGUARD_PG_BINDIR", str(tmp_path / "nowhere"))
    with pytest.raises(
        PayguardError, match=r"PostgreSQL 15 server binaries not found in .*; run `make setup`"
    ):
        scratch_cluster.start()


@pytest.fixture(scope="module")
def private_project(
    tmp_path_factory: pytest.TempPathFactory, project: Project
) -> Iterator[Project]:
    """A project in a private folder, for the module's tests of the CLI's cluster commands
    (its cluster, which the tests make, stop and destroy, is deleted after the module)."""
    made = Project(tmp_path_factory.mktemp("private"))
    made.migrations_dir.mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", made.supabase_dir / "config.toml")
    yield made
    Cluster.destroy_for_project(made)


def test_reset_drops_everything_and_redeploys_on_the_same_port(private_project: Project):
    """Through the CLI, on a project in a private folder: the cluster then lives where the
    server's OS user can reach it, behind a symlink."""
    (private_project.migrations_dir / "20260101000000_first.sql").write_text(
        "create table public.kept (id int);\n"
    )
    runner = CliRunner()
    workdir = ["--workdir", str(private_project.root)]
    cluster = Cluster.for_project(private_project)
    started = runner.invoke(app, [*workdir, "db", "start"])
    assert started.exit_code == 0, started.output
    assert started.output.strip() == cluster.url()
    assert runner.invoke(app, [*workdir, "db", "start"]).output == started.output

    deployed = runner.invoke(app, [*workdir, "deploy"])
    assert deployed.exit_code == 0, deployed.output
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("create table public.scribble (id int)")
    port = cluster.port()

    reset = runner.invoke(app, [*workdir, "db", "reset", "--no-seed"])
    assert reset.exit_code == 0, reset.output
    assert cluster.port() == port
    with psycopg.connect(cluster.url()) as conn:
        assert conn.execute("select to_regclass('public.scribble')").fetchone() == (None,)
        assert conn.execute("select to_regclass('public.kept')").fetchone() == ("kept",)

    status = runner.invoke(app, [*workdir, "db", "status"])
    assert status.output.startswith("running")
    assert runner.invoke(app, [*workdir, "db", "stop"]).output.strip() == "stopped"
    assert runner.invoke(app, [*workdir, "db", "stop"]).output.strip() == "not running"
    stopped = runner.invoke(app, [*workdir, "db", "status"])
    assert stopped.exit_code == 3
    assert stopped.output.strip() == "stopped (initialised)"


def test_deploys_to_a_cluster_whose_bootstrap_superuser_is_postgres(
    cluster: Cluster, request, project
):
    plain = scratch(cluster, "plain", superuser="postgres")
    try:
        plain.start(free_port())
        report = deploy(plain.admin_url(), project)
        assert report.steps[0].kind == "standin"
        with psycopg.connect(plain.admin_url()) as conn:
            roles = dict(
                conn.execute(
                    "select rolname, rolsuper from pg_roles "
                    "where rolname in ('postgres', 'anon', 'authenticated', 'service_role')"
                ).fetchall()
            )
            applied = conn.execute(
                "select count(*) from supabase_migrations.schema_migrations"
            ).fetchone()
        assert roles == {
            "postgres": True,
            "anon": False,
            "authenticated": False,
            "service_role": False,
        }
        assert applied == (len(list(project.migrations_dir.glob("*.sql"))),)
        assert deploy(plain.admin_url(), project).steps == []
    finally:
        plain.destroy()
        shutil.rmtree(plain.base, ignore_errors=True)


def test_the_superuser_cannot_log_in_over_tcp(made_cluster: Cluster):
    status = made_cluster.start()
    for password in ("postgres", ""):
        with pytest.raises(psycopg.OperationalError, match="rejects connection"):
            psycopg.connect(
                f"postgresql://supabase_admin:{password}@127.0.0.1:{status.port}/postgres"
                "?sslmode=disable"
            )


def test_a_refused_port_leaves_no_half_made_cluster(scratch_cluster: Cluster):
    with pytest.raises(PayguardError, match="port 54322 is reserved for the Supabase CLI"):
        scratch_cluster.start(54322)
    assert not scratch_cluster.initialized()
    with (
        squatter() as taken,
        pytest.raises(PayguardError, match=f"port {taken} on 127.0.0.1 is already in use"),
    ):
        scratch_cluster.start(taken)
    assert not scratch_cluster.initialized()
    status = scratch_cluster.start()
    with psycopg.connect(scratch_cluster.url()) as conn:
        assert conn.execute("select current_user").fetchone() == (APP_ROLE,)
    scratch_cluster.stop()
    with squatter() as taken, pytest.raises(PayguardError, match="already in use"):
        scratch_cluster.start(taken)
    assert scratch_cluster.port() == status.port, "a refused port must not be written down"


def test_the_first_deploy_to_a_cluster_without_a_postgres_role_runs_migrations_as_postgres(
    cluster: Cluster, project
):
    plain = scratch(cluster, "nopostgres", superuser="ci_admin")
    try:
        plain.start(free_port())
        with psycopg.connect(plain.admin_url(), autocommit=True) as conn:
            conn.execute("alter database postgres owner to ci_admin")
            conn.execute("drop role postgres")
        deploy(plain.admin_url(), project)
        with psycopg.connect(plain.admin_url()) as conn:
            owner = conn.execute(
                "select pg_get_userbyid(nspowner) from pg_namespace where nspname = 'private'"
            ).fetchone()
            super_postgres = conn.execute(
                "select rolsuper from pg_roles where rolname = 'postgres'"
            ).fetchone()
        assert owner == ("postgres",)
        assert super_postgres == (False,)
    finally:
        plain.destroy()


def test_destroy_removes_a_relocated_cluster_and_its_link(private_project: Project):
    """The cluster the reset test made and stopped, when it ran first; else a new one."""
    runner = CliRunner()
    workdir = ["--workdir", str(private_project.root)]
    assert runner.invoke(app, [*workdir, "db", "start"]).exit_code == 0
    base = Cluster.for_project(private_project).base
    assert base.is_dir()
    destroyed = runner.invoke(app, [*workdir, "db", "destroy"])
    assert destroyed.output.strip() == "destroyed"
    assert not base.exists()
    assert not (private_project.state_dir / "cluster").exists()
    assert runner.invoke(app, [*workdir, "db", "destroy"]).output.strip() == "no cluster to destroy"


def test_deploys_into_two_databases_of_a_fresh_cluster_at_once_both_succeed(
    scratch_cluster: Cluster, project: Project
):
    """The cluster's roles are made once, by whichever deploy comes first: the other waits
    for it (SHARE ROW EXCLUSIVE on pg_authid), then finds them made."""
    scratch_cluster.start(free_port())
    names = ["first", "second"]
    with psycopg.connect(scratch_cluster.admin_url(), autocommit=True) as conn:
        for name in names:
            conn.execute(f"create database {name}")
    ready = threading.Barrier(len(names))

    def deploy_into(name: str) -> int:
        ready.wait()
        return len(deploy(scratch_cluster.admin_url(name), project).steps)

    with ThreadPoolExecutor(len(names)) as pool:
        steps = list(pool.map(deploy_into, names))
    assert steps[0] == steps[1] > 1
    with psycopg.connect(scratch_cluster.admin_url()) as conn:
        roles = conn.execute(
            "select count(*) from pg_roles where rolname in "
            "('anon', 'authenticated', 'service_role', 'authenticator', 'admin', 'auditor')"
        ).fetchone()
    assert roles == (6,)


# -- data in memory -------------------------------------------------------------------------


def test_data_stay_on_disk_when_asked_or_when_there_is_no_tmpfs(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("PAYGUARD_CLUSTER_DATA", "disk")
    assert memory_root() is None
    monkeypatch.setenv("PAYGUARD_CLUSTER_DATA", "memory")
    assert memory_root(tmp_path) is None  # a folder on disk is no tmpfs
    monkeypatch.setenv("PAYGUARD_CLUSTER_DATA", "ram")
    with pytest.raises(
        PayguardError, match=r"PAYGUARD_CLUSTER_DATA is 'ram'; it takes memory or disk"
    ):
        memory_root()


IN_MEMORY = pytest.mark.skipif(
    memory_root(MEMORY_ROOT) is None, reason="this machine has no tmpfs at /dev/shm with room"
)


@pytest.fixture
def memory_cluster(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A cluster not made yet, to be made in memory; destroyed afterwards."""
    made = Cluster(scratch_base(cluster, request.node.name[:30]), memory=MEMORY_ROOT)
    made.destroy()
    yield made
    made.destroy()
    shutil.rmtree(made.base, ignore_errors=True)


@IN_MEMORY
def test_a_cluster_in_memory_is_made_anew_once_its_memory_is_emptied(
    memory_cluster: Cluster, cluster: Cluster
):
    made = memory_cluster
    parent = private_parent(MEMORY_ROOT)
    # A folder left by a cluster deleted by hand, whose link is gone: swept when one is made.
    left = Path(tempfile.mkdtemp(prefix="payguard-left-", dir=parent))
    (left / "owner").write_text(str(made.base / "gone" / "data") + "\n")
    (left / "data").mkdir()
    for path in (left, left / "owner", left / "data"):
        give_to_server_user(path)
    status = made.start()
    in_memory = made.data_in_memory()
    assert in_memory is not None
    assert (in_memory.name, in_memory.parent.parent) == ("data", parent)
    assert status.data_in_memory == in_memory
    assert oct(in_memory.parent.stat().st_mode & 0o777) == "0o700"
    assert not left.exists()
    with psycopg.connect(made.admin_url()) as conn:
        (data_directory,) = conn.execute("show data_directory").fetchone()
        conn.execute("create table kept (x int)")
    assert Path(data_directory).resolve() == in_memory
    # The project's cluster, whose link points at its folder, was not swept.
    with psycopg.connect(cluster.admin_url()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    # As a restart of the machine does: the memory is emptied, the link stays.
    made.stop()
    shutil.rmtree(in_memory.parent)
    assert not made.initialized()
    assert not made.status().running
    made.start()
    again = made.data_in_memory()
    assert again not in (None, in_memory)
    with psycopg.connect(made.admin_url()) as conn:
        assert conn.execute("select to_regclass('kept')").fetchone() == (None,)
    made.destroy()
    assert again is not None
    assert not again.parent.exists()
    assert not made.base.exists()


@IN_MEMORY
def test_a_link_to_anything_but_its_own_folder_is_never_followed(
    memory_cluster: Cluster, tmp_path: Path
):
    """/dev/shm is shared by every user: what a link points at is used, or deleted, only when
    it is the folder this cluster made there."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "PG_VERSION").write_text("15\n")
    (victim / "payguard.conf").write_text("port = 1\n")
    made = memory_cluster
    made.start()
    in_memory = made.data_in_memory()
    assert in_memory is not None
    made.stop()
    # The memory emptied, then the folder's name planted as a link to the victim.
    shutil.rmtree(in_memory.parent)
    in_memory.parent.symlink_to(victim, target_is_directory=True)
    try:
        assert made.data_in_memory() is None
        assert not made.initialized()
        made.start()  # a new cluster, the planted link left alone
        assert (victim / "PG_VERSION").read_text() == "15\n"
        assert made.data_in_memory() not in (None, in_memory)
    finally:
        in_memory.parent.unlink()
    made.stop()
    # data/ pointed straight at a folder elsewhere: not read, and not deleted with the cluster.
    made.destroy()
    made.base.mkdir(parents=True)
    made.data_dir.symlink_to(victim, target_is_directory=True)
    assert not made.initialized()
    assert made.port() is None
    made.destroy()
    assert sorted(p.name for p in victim.iterdir()) == ["PG_VERSION", "payguard.conf"]
    assert (victim / "payguard.conf").read_text() == "port = 1\n"


def test_folders_made_at_once_are_never_swept_as_left_behind(tmp_path: Path):
    """Many clusters made at once (as the tests make them): each one's folder, made and linked
    under the lock, survives the others' sweeps."""
    root = tmp_path / "memory"
    root.mkdir()
    give_to_server_user(root)
    links = [tmp_path / f"cluster-{n}" / "data" for n in range(24)]
    for link in links:
        link.parent.mkdir()

    def make(link: Path) -> None:
        make_data(root, f"payguard-{link.parent.name}-", link)

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(make, links))
    for link in links:
        assert trusted_data(link, f"payguard-{link.parent.name}-") is not None, link
    # and a folder whose link is gone is swept by the next one made
    links[0].unlink()
    make_data(root, "payguard-late-", tmp_path / "late-data")
    assert len([p for p in private_parent(root).iterdir() if p.is_dir()]) == len(links)


def test_a_settings_file_turned_into_a_link_is_never_written_through(
    made_cluster: Cluster, tmp_path: Path
):
    """The data folder is the server's OS user's: as root, payguard would otherwise write, and
    hand to that user, whatever a link there points at."""
    made_cluster.stop()
    settings = made_cluster.data_dir / "payguard.conf"
    kept = settings.read_text()
    victim = tmp_path / "victim"
    victim.write_text("port = 5432\n")
    owner = victim.stat().st_uid
    settings.unlink()
    settings.symlink_to(victim)
    try:
        with pytest.raises(PayguardError, match="is a symbolic link; payguard does not write"):
            made_cluster.start(free_port())  # a new port: the settings are written again
        assert victim.read_text() == "port = 5432\n"
        assert victim.stat().st_uid == owner
    finally:
        settings.unlink()
        settings.write_text(kept)
        give_to_server_user(settings)
    assert made_cluster.start().running
