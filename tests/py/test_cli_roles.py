"""deploy refuses a cluster where one of payguard's roles already exists with attributes or
memberships payguard does not give it, before anything is applied; it accepts one that is as
payguard makes it. Roles belong to the whole cluster, so these tests have a cluster of their
own."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster, free_port
from payguard.errors import ExitCode
from payguard.project import Project
from payguard.roles import PAYGUARD_ROLES

# The project's first migrations, up to the one that creates payguard's roles.
ROLES_MIGRATION = "20261205080000_roles_and_grants.sql"


@pytest.fixture(scope="module")
def own_cluster(cluster: Cluster) -> Iterator[Cluster]:
    """A cluster of the module's own, its data on disk (made without `memory`), where the
    other tests' clusters keep theirs in memory when the machine has a tmpfs."""
    made = Cluster(cluster.base.parent / f"scratch-roles-{os.getpid()}")
    made.start(free_port())
    yield made
    made.destroy()
    shutil.rmtree(made.base, ignore_errors=True)


@pytest.fixture(scope="module")
def roles_migrations(project: Project) -> list[Path]:
    """The project's migration files up to the roles migration (found by name: parsing every
    migration would only cost time)."""
    files = sorted(project.migrations_dir.glob("*.sql"))
    names = [path.name for path in files]
    assert ROLES_MIGRATION in names, f"{ROLES_MIGRATION} is not a migration of the project"
    return files[: names.index(ROLES_MIGRATION) + 1]


@pytest.fixture
def roles_project(scratch_project: Project, roles_migrations: list[Path]) -> Project:
    for path in roles_migrations:
        shutil.copy(path, scratch_project.migrations_dir / path.name)
    return scratch_project


@pytest.fixture
def fresh(own_cluster: Cluster) -> Iterator[str]:
    """A new database in the cluster, with none of payguard's roles; cleaned up after."""
    name = f"roles_{os.getpid()}"
    admin = own_cluster.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        conn.execute(f"create database {name}")
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"drop database if exists {name} with (force)")
        for role in (*PAYGUARD_ROLES, "eve"):
            conn.execute(f"drop role if exists {role}")


def run(own_cluster: Cluster, sql: str) -> None:
    with psycopg.connect(own_cluster.admin_url(), autocommit=True) as conn:
        conn.execute(sql)


def deploy(project: Project, url: str) -> object:
    return CliRunner().invoke(app, ["deploy", "--workdir", str(project.root), "--db-url", url])


@pytest.mark.parametrize(
    ("made_by_someone_else", "difference"),
    [
        ("create role admin login", "admin has LOGIN"),
        ("create role auditor superuser", "auditor has SUPERUSER"),
        ("create role payment_service createrole", "payment_service has CREATEROLE"),
        ("create role escrow_service createdb", "escrow_service has CREATEDB"),
        ("create role admin replication", "admin has REPLICATION"),
        ("create role admin bypassrls login", "admin has LOGIN, BYPASSRLS"),
        ("create role admin nologin; create role eve login; grant admin to eve", "members eve"),
        (
            "create role auditor nologin; grant pg_read_all_data to auditor",
            "auditor has membership in pg_read_all_data",
        ),
        (
            "create role escrow_service nologin; create role eve; grant escrow_service to eve "
            "with admin option",
            "escrow_service has members eve, members with the admin option eve",
        ),
    ],
)
def test_a_conflicting_role_is_refused_and_nothing_applied(
    own_cluster: Cluster, fresh: str, roles_project: Project, made_by_someone_else, difference
):
    run(own_cluster, made_by_someone_else)
    url = own_cluster.admin_url(fresh)
    result = deploy(roles_project, url)
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert result.output.startswith("error: refusing to deploy, nothing was applied"), result.output
    assert difference in result.output
    assert len(result.output.splitlines()) == 1
    with psycopg.connect(url) as conn:
        assert conn.execute(
            "select to_regclass('supabase_migrations.schema_migrations'), "
            "to_regnamespace('auth'), to_regnamespace('private')"
        ).fetchone() == (None, None, None)


def test_every_conflict_is_listed(own_cluster: Cluster, fresh: str, roles_project: Project):
    run(own_cluster, "create role admin login; create role auditor bypassrls")
    result = deploy(roles_project, own_cluster.admin_url(fresh))
    assert result.exit_code == ExitCode.DATABASE
    assert "(admin has LOGIN; auditor has BYPASSRLS)" in result.output


def test_a_role_as_payguard_makes_it_is_accepted(
    own_cluster: Cluster, fresh: str, roles_project: Project
):
    run(own_cluster, "create role admin nologin noinherit")
    url = own_cluster.admin_url(fresh)
    result = deploy(roles_project, url)
    assert result.exit_code == 0, result.output
    with psycopg.connect(url) as conn:
        members = conn.execute(
            "select r.rolname, array_agg(m.rolname order by m.rolname) "
            "from pg_roles as r join pg_auth_members as a on a.roleid = r.oid "
            "join pg_roles as m on m.oid = a.member where r.rolname = any(%s) "
            "group by r.rolname",
            (list(PAYGUARD_ROLES),),
        ).fetchall()
    assert dict(members) == {role: ["authenticator", "postgres"] for role in PAYGUARD_ROLES}
    # The roles deploy made are as it makes them: deploying again, or elsewhere, is fine.
    again = deploy(roles_project, url)
    assert again.exit_code == 0, again.output
    assert "up to date" in again.output
