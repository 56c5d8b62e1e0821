"""`payguard policies generate`: the schema file holds every table's SQL, a migration only the
blocks of the tables that changed; applied in order, the migrations give the database that the
specs describe, the same as one built from scratch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.deploy import deploy
from payguard.policies.check import TableState, differences, read_state
from payguard.policies.generate import SCHEMA_HEADER, generate, schema_file
from payguard.policies.render import HEADER, render, render_table, split_blocks
from payguard.policies.spec import load_specs
from payguard.project import Project


def is_policy_migration(path: Path) -> bool:
    """A migration generated from the specs: the baseline's or a later one's."""
    name = path.stem.split("_", 1)[1]
    return name == "policies" or name.startswith("policies_")


EDITED = "public.projects"
# A policy's using clause in projects.toml, and what the edit makes of it.
USING_BEFORE = 'using = "owner_id = auth.uid()"'
USING_AFTER = 'using = "owner_id = auth.uid() and contractor_id is not null"'


@pytest.fixture
def policy_project(scratch_project: Project, project: Project) -> Project:
    """A scratch project with the real specs and the real migrations less the generated
    policy migrations: tables without their policies, as before the first generate."""
    shutil.copytree(project.policies_dir, scratch_project.policies_dir)
    for path in project.migrations_dir.glob("*.sql"):
        if not is_policy_migration(path):
            shutil.copy(path, scratch_project.migrations_dir / path.name)
    return scratch_project


def edit_projects_spec(project: Project) -> None:
    spec = project.policies_dir / "projects.toml"
    text = spec.read_text()
    assert text.count(USING_BEFORE) == 1
    spec.write_text(text.replace(USING_BEFORE, USING_AFTER))


def migrations(project: Project) -> list[Path]:
    return sorted(project.migrations_dir.glob("*.sql"))


def test_split_blocks_gives_each_tables_block_as_rendered(project: Project) -> None:
    specs = load_specs(project.policies_dir)
    text = render(specs)
    header, blocks = split_blocks(text)
    assert header == HEADER
    assert list(blocks) == [spec.qualified for spec in specs]
    assert all(blocks[spec.qualified] == render_table(spec) for spec in specs)
    assert header + "".join(blocks.values()) == text


def test_first_generate_writes_the_schema_file_and_a_migration_with_every_table(
    policy_project: Project,
) -> None:
    specs = load_specs(policy_project.policies_dir)
    before = migrations(policy_project)
    result = generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    assert result.schema_written
    assert result.schema_file == policy_project.root / "supabase" / "schemas" / "policies.sql"
    # The schema file is render()'s output under its own header.
    assert result.schema_file.read_text() == SCHEMA_HEADER + render(specs)[len(HEADER) :]
    assert result.tables == tuple(spec.qualified for spec in specs)
    assert result.migration is not None
    assert result.migration.name == "20990101000000_policies.sql"
    assert migrations(policy_project) == sorted([*before, result.migration])
    _, blocks = split_blocks(result.migration.read_text())
    assert blocks == {spec.qualified: render_table(spec) for spec in specs}


def test_generate_is_deterministic(policy_project: Project, tmp_path: Path) -> None:
    first = generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    again = Project(tmp_path / "again")
    shutil.copytree(policy_project.root, again.root, ignore=shutil.ignore_patterns("again"))
    assert first.migration is not None
    first.migration.unlink()
    schema_file(policy_project).unlink()
    second = generate(policy_project, now=datetime(2099, 1, 2, tzinfo=UTC))
    assert second.migration is not None
    assert (
        second.migration.read_bytes() == (again.migrations_dir / first.migration.name).read_bytes()
    )
    assert second.schema_file.read_bytes() == schema_file(again).read_bytes()


def test_no_spec_change_writes_nothing(policy_project: Project) -> None:
    generate(policy_project)
    before = {p: p.read_bytes() for p in migrations(policy_project)}
    schema_before = schema_file(policy_project).stat().st_mtime_ns
    result = generate(policy_project)
    assert not result.schema_written
    assert result.migration is None
    assert result.tables == ()
    assert {p: p.read_bytes() for p in migrations(policy_project)} == before
    assert schema_file(policy_project).stat().st_mtime_ns == schema_before


def test_a_changed_spec_gives_a_migration_with_only_its_table(policy_project: Project) -> None:
    generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    edit_projects_spec(policy_project)
    result = generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    assert result.schema_written
    assert result.tables == (EDITED,)
    assert result.migration is not None
    # Named after its one table, one second after the newest migration.
    assert result.migration.name == "20990101000001_policies_projects.sql"
    text = result.migration.read_text()
    header, blocks = split_blocks(text)
    spec = next(s for s in load_specs(policy_project.policies_dir) if s.qualified == EDITED)
    assert blocks == {EDITED: render_table(spec)}
    assert "contractor_id is not null" in text
    assert "public.users" not in header
    # The schema file holds the new block among the others.
    assert split_blocks(schema_file(policy_project).read_text())[1][EDITED] == render_table(spec)


def test_a_column_grant_change_gives_a_migration_with_only_its_table(
    policy_project: Project,
) -> None:
    generate(policy_project)
    spec = policy_project.policies_dir / "projects.toml"
    text = spec.read_text()
    before = '"update (title, description, contractor_id, status)"'
    assert text.count(before) == 1
    spec.write_text(text.replace(before, '"update (title, contractor_id, status)"'))
    result = generate(policy_project)
    assert result.tables == (EDITED,)
    assert result.migration is not None
    assert result.migration.name.endswith("_policies_projects.sql")
    assert "update (\n  title, contractor_id, status\n)" in result.migration.read_text()


def test_the_committed_policy_sql_is_current(project: Project) -> None:
    """The schema file holds exactly what the specs generate."""
    specs = load_specs(project.policies_dir)
    path = schema_file(project)
    assert path.is_file(), "supabase/schemas/policies.sql is missing: run policies generate"
    assert path.read_text() == render(specs, header=SCHEMA_HEADER)


def test_cli_json_names_the_schema_file_the_migration_and_the_tables(
    policy_project: Project,
) -> None:
    runner = CliRunner()
    workdir = ["--workdir", str(policy_project.root)]
    first = runner.invoke(app, [*workdir, "policies", "generate", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert data["schema_file"] == "supabase/schemas/policies.sql"
    assert data["migration"].startswith("supabase/migrations/")
    assert data["migration"].endswith("_policies.sql")
    assert len(data["tables"]) == len(load_specs(policy_project.policies_dir))
    edit_projects_spec(policy_project)
    second = json.loads(runner.invoke(app, [*workdir, "policies", "generate", "--json"]).output)
    assert second["migration"].endswith("_policies_projects.sql")
    assert second["tables"] == [EDITED]
    third = json.loads(runner.invoke(app, [*workdir, "policies", "generate", "--json"]).output)
    assert third == {
        "schema_file": "supabase/schemas/policies.sql",
        "migration": None,
        "tables": [],
    }
    plain = runner.invoke(app, [*workdir, "policies", "generate"])
    assert plain.exit_code == 0
    assert "no migration written" in plain.output


# --- applied to databases -------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_database(
    cluster: Cluster, project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database with the real migrations less the generated policy migrations, deployed
    once for the module and cloned by each test (a unique name: safe under xdist)."""
    base = Project(tmp_path_factory.mktemp("base"))
    base.migrations_dir.mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", base.supabase_dir / "config.toml")
    for path in project.migrations_dir.glob("*.sql"):
        if not is_policy_migration(path):
            shutil.copy(path, base.migrations_dir / path.name)
    name = f"payguard_policies_base_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    recreate_database(cluster.admin_url(), name)
    deploy(cluster.admin_url(name), base)
    yield name
    drop_database(cluster.admin_url(), name)


@pytest.fixture
def fresh_database(cluster: Cluster, base_database: str) -> Iterator[Callable[[], str]]:
    """fresh_database() gives the admin URL of a new copy of the base database, dropped
    afterwards; deploying a scratch project to it applies only the migrations the base lacks."""
    names: list[str] = []

    def make() -> str:
        name = f"payguard_policies_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        recreate_database(cluster.admin_url(), name, template=base_database)
        names.append(name)
        return cluster.admin_url(name)

    yield make
    for name in names:
        drop_database(cluster.admin_url(), name)


def public_state(url: str) -> dict[str, TableState]:
    with psycopg.connect(url) as conn:
        return read_state(conn, "public")


def test_the_migrations_give_what_the_specs_say_and_what_a_scratch_build_gives(
    policy_project: Project, tmp_path: Path, fresh_database: Callable[[], str]
) -> None:
    generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    edit_projects_spec(policy_project)
    generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    stepwise = fresh_database()
    deploy(stepwise, policy_project)
    specs = load_specs(policy_project.policies_dir)
    assert differences(stepwise, specs) == []

    # From scratch: the same base and one generate of the edited specs.
    scratch = Project(tmp_path / "scratch")
    (scratch.supabase_dir / "migrations").mkdir(parents=True)
    shutil.copy(policy_project.supabase_dir / "config.toml", scratch.supabase_dir / "config.toml")
    shutil.copytree(policy_project.policies_dir, scratch.policies_dir)
    for path in migrations(policy_project)[:-2]:
        shutil.copy(path, scratch.migrations_dir / path.name)
    once = generate(scratch, now=datetime(2099, 1, 1, tzinfo=UTC))
    assert once.migration is not None
    built = fresh_database()
    deploy(built, scratch)
    assert public_state(stepwise) == public_state(built)


def test_a_removed_spec_drops_its_policies_and_revokes_its_grants(
    policy_project: Project, fresh_database: Callable[[], str]
) -> None:
    generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    (policy_project.policies_dir / "notifications.toml").unlink()
    result = generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    assert result.tables == ("public.notifications",)
    assert result.removed == ("public.notifications",)
    assert result.migration is not None
    assert result.migration.name == "20990101000001_policies_notifications.sql"
    assert "public.notifications" not in split_blocks(schema_file(policy_project).read_text())[1]

    url = fresh_database()
    # Up to the first generate the table has its policies and grants ...
    deploy_until(policy_project, url, result.migration)
    kept = public_state(url)["notifications"]
    assert kept.policies
    assert kept.grants
    # ... and the removal's migration drops and revokes them, leaving RLS forced.
    deploy(url, policy_project)
    gone = public_state(url)["notifications"]
    assert gone.policies == {}
    assert gone.grants == frozenset()
    assert gone.rls
    assert gone.force_rls
    # The other tables still match their specs: only the table left without one differs.
    found = differences(url, load_specs(policy_project.policies_dir))
    assert found
    assert all("notifications" in line for line in found)


def deploy_until(project: Project, url: str, stop: Path) -> None:
    """Deploy the migrations before `stop` (a copy of the project without it and later ones)."""
    partial = Project(project.root.parent / f"until_{stop.stem}")
    (partial.supabase_dir / "migrations").mkdir(parents=True)
    shutil.copy(project.supabase_dir / "config.toml", partial.supabase_dir / "config.toml")
    for path in migrations(project):
        if path.name < stop.name:
            shutil.copy(path, partial.migrations_dir / path.name)
    deploy(url, partial)


def test_the_generated_files_pass_sqlfluff(
    policy_project: Project, project: Project, tmp_path: Path
) -> None:
    generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    edit_projects_spec(policy_project)
    (policy_project.policies_dir / "notifications.toml").unlink()
    result = generate(policy_project, now=datetime(2099, 1, 1, tzinfo=UTC))
    assert result.migration is not None
    assert result.tables == (EDITED, "public.notifications")
    assert result.migration.name == "20990101000001_policies.sql"
    # The schema file's blocks are those of the migrations that `make sqlfluff` lints; its
    # header is its own: linted with one block (the whole file takes sqlfluff a long while).
    header, blocks = split_blocks(result.schema_file.read_text())
    assert header == SCHEMA_HEADER
    header_and_one_block = tmp_path / "policies_header.sql"
    header_and_one_block.write_text(header + blocks[EDITED])
    lint = subprocess.run(
        [
            str(project.root / ".venv" / "bin" / "sqlfluff"),
            "lint",
            "--config",
            str(project.root / ".sqlfluff"),
            str(result.migration),
            str(header_and_one_block),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
