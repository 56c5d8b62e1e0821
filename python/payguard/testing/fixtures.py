"""pytest fixtures: a fresh database per test module, cloned from the template, and a client
that acts as an app client through PostgREST. Load with `pytest_plugins`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from payguard.cluster import APP_ROLE, MAX_SOCKET_DIR_LEN, Cluster
from payguard.cluster_memory import memory_root
from payguard.project import Project, find_project
from payguard.server_user import give_to_server_user, server_user_home
from payguard.template import clone_template, drop_clone, ensure_template
from payguard.testing.client import AppClient

AUTHENTICATOR_ROLE = "authenticator"


@pytest.fixture(scope="session")
def project() -> Project:
    return find_project()


@pytest.fixture(scope="session")
def cluster(project: Project) -> Cluster:
    """The project's embedded cluster, started, with a current template database."""
    embedded = Cluster.for_project(project)
    embedded.start()
    ensure_template(embedded, project)
    return embedded


@contextmanager
def own_cluster(project: Project, name: str) -> Iterator[Cluster]:
    """A cluster of its own, beside the project's (where the server's OS user reaches it),
    started and with a current template; stopped and deleted afterwards. For a test module
    whose tests see what every database of a cluster does (the oldest transaction running,
    cluster-wide): another worker's tests cannot touch it there. A module takes it by
    overriding `cluster`."""
    folder = f"{name}-{os.getpid()}"
    base = Cluster.for_project(project).base.parent / folder
    if len(str(base / "run")) > MAX_SOCKET_DIR_LEN:
        # As the project's own cluster: in the server's OS user's home when the path is long.
        base = server_user_home() / "payguard" / folder
        base.parent.mkdir(parents=True, exist_ok=True)
        give_to_server_user(base.parent)
    made = Cluster(base, memory=memory_root())
    made.destroy()  # one left by a run that was killed, with this process id
    try:
        made.start()
        ensure_template(made, project)
        yield made
    finally:
        made.destroy()


@pytest.fixture(scope="module")
def database(cluster: Cluster) -> Iterator[str]:
    """The name of a database cloned from the template for this test module alone."""
    name, _ = clone_template(cluster, "py")
    yield name
    drop_clone(cluster, name)


@pytest.fixture(scope="module")
def database_url(cluster: Cluster, database: str) -> str:
    """The module database's URL, as the schema owner `postgres` (not a superuser)."""
    return cluster.socket_url(APP_ROLE, database)


@pytest.fixture(scope="module")
def admin_url(cluster: Cluster, database: str) -> str:
    """The module database's URL as the cluster superuser, for what only it may do."""
    return cluster.admin_url(database)


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection as `postgres`, which owns the schema and bypasses RLS."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(cluster: Cluster, database: str) -> AppClient:
    """Requests as PostgREST makes them: logged in as `authenticator`, which then takes the
    request's role, so a role that authenticator was not granted cannot be used."""
    return AppClient(cluster.socket_url(AUTHENTICATOR_ROLE, database))


@pytest.fixture
def make_user(db: psycopg.Connection[tuple[Any, ...]]) -> Callable[..., uuid.UUID]:
    """A factory: make_user("name") creates a confirmed Supabase user and returns its id."""

    def make(identifier: str | None = None, email: str | None = None) -> uuid.UUID:
        name = identifier or f"user-{uuid.uuid4().hex[:8]}"
        row = db.execute("select tests.create_supabase_user(%s, %s)", (name, email)).fetchone()
        assert row is not None
        return uuid.UUID(str(row[0]))

    return make
