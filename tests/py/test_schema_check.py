"""payguard schema check: the schema files that config.toml lists build, in one transaction as
postgres after the Supabase stand-in, a database that is compared object by object with the
one the migrations build; every difference is named, and none means exit 0."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.db import connect
from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.schema.build import SchemaFileError, apply_schema_files, build_database
from payguard.schema.catalog import Snapshot, snapshot
from payguard.schema.check import _from_migrations
from payguard.schema.compare import compare
from payguard.schema.files import load_schema_files, schema_file_paths
from payguard.schema.server import scratch_name
from payguard.standin import apply_standin

MIGRATION = "20260101000000_accounts"

# One definition, as a migration would write it and as a schema file would: the check must
# find them equal. Each planted difference below changes one thing in the schema file.
DEFINITION = """\
create schema app;
grant usage on schema app to authenticated, anon;

create table app.accounts (
  id bigint primary key,
  owner_id uuid not null,
  balance bigint not null default 0,
  note text,
  constraint accounts_balance_check check (balance >= 0)
);
create index accounts_owner_idx on app.accounts (owner_id);
alter table app.accounts alter column note set statistics 0;
comment on table app.accounts is 'Money accounts.';
alter table app.accounts enable row level security;
create policy "owners read their accounts" on app.accounts
for select to authenticated using (owner_id = (select auth.uid()));
grant select on app.accounts to authenticated;
grant select (id, balance) on app.accounts to anon;

create table app.settings (
  key text primary key,
  value jsonb not null,
  updated_at timestamptz not null default now()
);
insert into app.settings (key, value) values ('limit', '100'), ('hops', '0');

create function app.touch() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
create trigger settings_touch before update on app.settings
for each row execute function app.touch();
"""

# (what is planted, text of DEFINITION, its replacement, the keys that must be reported)
PLANTED = [
    (
        "function body",
        "new.updated_at := now();",
        "new.updated_at := clock_timestamp();",
        {"function app.touch()"},
    ),
    ("security definer", "security definer\n", "", {"function app.touch()"}),
    ("search_path", "set search_path = ''\n", "", {"function app.touch()"}),
    (
        "trigger",
        "before update on app.settings",
        "before insert or update on app.settings",
        {"trigger app.settings.settings_touch"},
    ),
    (
        "policy using clause",
        "using (owner_id = (select auth.uid()))",
        "using (owner_id = (select auth.uid()) or balance = 0)",
        {'policy app.accounts."owners read their accounts"'},
    ),
    (
        "table grant",
        "grant select on app.accounts to authenticated;",
        "grant select, insert on app.accounts to authenticated;",
        {"grant insert on app.accounts to authenticated"},
    ),
    (
        "column grant",
        "grant select (id, balance) on app.accounts to anon;",
        "grant select (id, balance, note) on app.accounts to anon;",
        {"grant select(note) on app.accounts to anon"},
    ),
    (
        "constraint",
        "check (balance >= 0)",
        "check (balance > 0)",
        {"constraint app.accounts.accounts_balance_check"},
    ),
    (
        "index",
        "on app.accounts (owner_id);",
        "on app.accounts (owner_id, id);",
        {"index app.accounts.accounts_owner_idx"},
    ),
    (
        "comment",
        "'Money accounts.'",
        "'Accounts.'",
        {"comment on table app.accounts"},
    ),
    (
        "column statistics",
        "alter column note set statistics 0;",
        "alter column note set statistics 10;",
        {"column app.accounts.note"},
    ),
    (
        "column storage",
        "alter column note set statistics 0;",
        "alter column note set statistics 0, alter column note set storage external;",
        {"column app.accounts.note"},
    ),
    (
        "column default",
        "balance bigint not null default 0",
        "balance bigint not null default 1",
        {"column app.accounts.balance"},
    ),
    (
        "settings row",
        "('limit', '100')",
        "('limit', '200')",
        {"data app.settings"},
    ),
]

_SCHEMA_PATHS = re.compile(r"^schema_paths\s*=\s*\[.*?\]\s*$\n?", re.MULTILINE | re.DOTALL)


def set_schema_paths(project: Project, paths: list[str] | None) -> None:
    """List `paths` as db.migrations.schema_paths in the project's config.toml (None: leave
    the setting out, so that the default applies)."""
    config = project.supabase_dir / "config.toml"
    text = _SCHEMA_PATHS.sub("", config.read_text())
    if paths is not None:
        listed = ", ".join(f'"{p}"' for p in paths)
        text = text.replace("[db.migrations]\n", f"[db.migrations]\nschema_paths = [{listed}]\n")
        assert f"schema_paths = [{listed}]" in text
    config.write_text(text)


def write_schema_file(project: Project, name: str, sql: str) -> Path:
    path = project.supabase_dir / "schemas" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sql)
    return path


@pytest.fixture
def agreeing_project(scratch_project: Project, write_migration) -> Project:
    """A scratch project whose one migration and one schema file define the same database."""
    write_migration(MIGRATION, DEFINITION)
    write_schema_file(scratch_project, "accounts.sql", DEFINITION)
    set_schema_paths(scratch_project, ["./schemas/accounts.sql"])
    return scratch_project


@pytest.fixture
def scratch_database(cluster: Cluster) -> Iterator[str]:
    """A unique database name on the cluster, dropped afterwards whatever was made of it."""
    name = scratch_name("test_schema")
    yield name
    drop_database(cluster.admin_url(), name)


# -- the files ---------------------------------------------------------------------------------


def test_schema_files_come_in_the_listed_order_globs_sorted_each_once(scratch_project):
    for name in ("b.sql", "a.sql", "c.sql", "sub/z.sql"):
        write_schema_file(scratch_project, name, "select 1;\n")
    set_schema_paths(scratch_project, ["./schemas/c.sql", "./schemas/*.sql", "schemas/sub/*"])
    names = [
        p.relative_to(scratch_project.supabase_dir).as_posix()
        for p in schema_file_paths(scratch_project)
    ]
    assert names == ["schemas/c.sql", "schemas/a.sql", "schemas/b.sql", "schemas/sub/z.sql"]
    assert [f.domain for f in load_schema_files(scratch_project)] == ["c", "a", "b", "z"]


def test_without_schema_paths_every_file_in_schemas_is_taken_by_name(scratch_project):
    for name in ("ledger.sql", "audit.sql"):
        write_schema_file(scratch_project, name, "select 1;\n")
    set_schema_paths(scratch_project, None)
    assert [p.name for p in schema_file_paths(scratch_project)] == ["audit.sql", "ledger.sql"]


def test_no_schema_files_at_all_is_an_error(scratch_project):
    set_schema_paths(scratch_project, None)
    with pytest.raises(PayguardError, match=r"^no schema files: supabase/config.toml lists none"):
        schema_file_paths(scratch_project)


def test_a_listed_path_that_matches_nothing_is_an_error(scratch_project):
    write_schema_file(scratch_project, "a.sql", "select 1;\n")
    set_schema_paths(scratch_project, ["./schemas/a.sql", "./schemas/missing.sql"])
    with pytest.raises(PayguardError, match=r"'\./schemas/missing\.sql'.* matches no file"):
        schema_file_paths(scratch_project)


# -- the build ---------------------------------------------------------------------------------


def test_a_build_runs_the_files_as_postgres_and_records_no_history(
    cluster, agreeing_project, scratch_database
):
    report = build_database(cluster.admin_url(), scratch_database, agreeing_project)
    assert report.standin
    assert [name for name, _ in report.files] == ["supabase/schemas/accounts.sql"]
    with psycopg.connect(cluster.admin_url(scratch_database)) as conn:
        owner = conn.execute(
            "select pg_get_userbyid(relowner) from pg_class where oid = 'app.accounts'::regclass"
        ).fetchone()
        history = conn.execute("select to_regnamespace('supabase_migrations')").fetchone()
    assert owner == ("postgres",)
    assert history == (None,)


def test_a_failing_statement_names_its_file_and_line_and_nothing_is_kept(
    cluster, scratch_project, scratch_database
):
    write_schema_file(scratch_project, "one.sql", "create table public.kept (id int);\n")
    write_schema_file(
        scratch_project,
        "two.sql",
        "create table public.also (id int);\n\nselect 1;\n"
        "create table public.bad (id nosuchtype);\n",
    )
    set_schema_paths(scratch_project, ["./schemas/one.sql", "./schemas/two.sql"])
    with pytest.raises(SchemaFileError, match=r"^supabase/schemas/two\.sql:4: type \"nosuchtype\""):
        build_database(cluster.admin_url(), scratch_database, scratch_project)
    with psycopg.connect(cluster.admin_url(scratch_database)) as conn:
        kept = conn.execute("select to_regclass('public.kept')").fetchone()
    assert kept == (None,)


def test_a_schema_file_may_not_end_the_transaction_or_change_role(
    cluster, scratch_project, scratch_database
):
    write_schema_file(scratch_project, "a.sql", "create table public.t (id int);\ncommit;\n")
    write_schema_file(scratch_project, "b.sql", "-- who\nset role anon;\n")
    set_schema_paths(scratch_project, ["./schemas/*.sql"])
    with pytest.raises(SchemaFileError) as raised:
        build_database(cluster.admin_url(), scratch_database, scratch_project)
    assert "supabase/schemas/a.sql:2: the schema files are applied in one transaction" in str(
        raised.value
    )
    assert "supabase/schemas/b.sql:1: schema files run as postgres" in str(raised.value)


# -- the comparison ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrations_snapshot(cluster: Cluster, tmp_path_factory, project: Project) -> Iterator[Snapshot]:
    """The snapshot of a database deployed from the one migration, taken once for the module."""
    root = tmp_path_factory.mktemp("schema_check")
    (root / "supabase" / "migrations").mkdir(parents=True)
    (root / "supabase" / "config.toml").write_text(
        (project.supabase_dir / "config.toml").read_text()
    )
    (root / "supabase" / "migrations" / f"{MIGRATION}.sql").write_text(DEFINITION)
    name = scratch_name("test_schema_migrations")
    try:
        recreate_database(cluster.admin_url(), name)
        deploy(cluster.admin_url(name), Project(root))
        yield snapshot(cluster.admin_url(name))
    finally:
        drop_database(cluster.admin_url(), name)


@pytest.fixture(scope="module")
def standin_database(cluster: Cluster) -> Iterator[str]:
    """An empty database with the Supabase stand-in, which a build installs first: made once
    for the module, and copied for each build of the comparison tests."""
    name = scratch_name("test_schema_standin")
    try:
        recreate_database(cluster.admin_url(), name)
        with connect(cluster.admin_url(name)) as conn:
            apply_standin(conn)
        yield name
    finally:
        drop_database(cluster.admin_url(), name)


def files_snapshot(
    cluster: Cluster, project: Project, database: str, sql: str, standin: str
) -> Snapshot:
    """Build `database` from `sql` as the one schema file, as build_database does but on a
    copy of `standin` (the command's tests build with the stand-in installed), and take its
    snapshot."""
    write_schema_file(project, "accounts.sql", sql)
    set_schema_paths(project, ["./schemas/accounts.sql"])
    recreate_database(cluster.admin_url(), database, template=standin)
    report = apply_schema_files(cluster.admin_url(database), load_schema_files(project))
    assert not report.standin
    return snapshot(cluster.admin_url(database))


def test_the_same_definition_has_no_difference(
    cluster, scratch_project, scratch_database, migrations_snapshot, standin_database
):
    found = files_snapshot(cluster, scratch_project, scratch_database, DEFINITION, standin_database)
    assert compare(migrations_snapshot, found) == []
    # The snapshot covers what the definition made, by readable keys.
    for key in (
        "schema app",
        "table app.accounts",
        "column app.accounts.balance",
        "constraint app.accounts.accounts_balance_check",
        "index app.accounts.accounts_owner_idx",
        'policy app.accounts."owners read their accounts"',
        "grant select on app.accounts to authenticated",
        "grant select(balance) on app.accounts to anon",
        "grant usage on schema app to anon",
        "function app.touch()",
        "grant execute on function app.touch() to public",
        "trigger app.settings.settings_touch",
        "comment on table app.accounts",
        "data app.settings",
    ):
        assert key in found, key


@pytest.mark.parametrize(
    ("old", "new", "keys"), [p[1:] for p in PLANTED], ids=[p[0] for p in PLANTED]
)
def test_a_planted_difference_is_reported_by_name(
    cluster,
    scratch_project,
    scratch_database,
    migrations_snapshot,
    standin_database,
    old,
    new,
    keys,
):
    assert old in DEFINITION
    found = files_snapshot(
        cluster,
        scratch_project,
        scratch_database,
        DEFINITION.replace(old, new, 1),
        standin_database,
    )
    differences = compare(migrations_snapshot, found, a_name="migrations", b_name="schema files")
    assert {d.key for d in differences} == keys
    for difference in differences:
        if difference.status == "differs":
            assert difference.diff.startswith("--- migrations\n+++ schema files\n")


def test_a_differing_settings_row_is_shown_and_deploy_time_values_are_not_compared(
    cluster, scratch_project, scratch_database, migrations_snapshot, standin_database
):
    found = files_snapshot(
        cluster,
        scratch_project,
        scratch_database,
        DEFINITION.replace("('hops', '0')", "('hops', '1')"),
        standin_database,
    )
    [difference] = compare(migrations_snapshot, found, a_name="migrations", b_name="files")
    assert difference.key == "data app.settings"
    assert '-{"key": "hops", "value": 0}' in difference.diff.splitlines()
    assert '+{"key": "hops", "value": 1}' in difference.diff.splitlines()
    assert "not compared (filled at deploy time): updated_at" in found["data app.settings"]


def test_an_object_only_one_side_has_is_named_with_its_side(
    cluster, scratch_project, scratch_database, migrations_snapshot, standin_database
):
    found = files_snapshot(
        cluster,
        scratch_project,
        scratch_database,
        DEFINITION.replace("create index accounts_owner_idx on app.accounts (owner_id);\n", "")
        + "create function app.extra() returns int language sql as $$ select 1 $$;\n"
        + "create statistics app.accounts_stats on owner_id, balance from app.accounts;\n",
        standin_database,
    )
    statuses = {
        d.key: d.status
        for d in compare(migrations_snapshot, found, a_name="migrations", b_name="schema files")
    }
    assert statuses["index app.accounts.accounts_owner_idx"] == "only in migrations"
    assert statuses["function app.extra()"] == "only in schema files"
    assert statuses["grant execute on function app.extra() to public"] == "only in schema files"
    assert statuses["statistics object app.accounts_stats"] == "only in schema files"


# -- the command -------------------------------------------------------------------------------


def run_check(cluster: Cluster, project: Project, *extra: str):
    return CliRunner().invoke(
        app,
        [
            "--workdir",
            str(project.root),
            "schema",
            "check",
            "--db-url",
            cluster.admin_url(),
            *extra,
        ],
    )


def scratch_databases(cluster: Cluster) -> list[str]:
    """The check's scratch databases that this process made and did not drop."""
    with psycopg.connect(cluster.admin_url()) as conn:
        rows = conn.execute(
            "select datname from pg_database where datname ~ %s",
            (f"^payguard_schema_(migrations|files)_{os.getpid()}_",),
        ).fetchall()
    return [r[0] for r in rows]


def test_the_command_exits_0_when_the_files_build_the_migrations_database(
    cluster, agreeing_project
):
    result = run_check(cluster, agreeing_project)
    assert result.exit_code == 0, result.output
    assert "the schema files build the same database as the migrations" in result.output
    assert scratch_databases(cluster) == []


def test_the_command_names_every_difference_and_exits_1(cluster, agreeing_project):
    write_schema_file(
        agreeing_project,
        "accounts.sql",
        DEFINITION.replace("check (balance >= 0)", "check (balance > 0)").replace(
            "('limit', '100')", "('limit', '200')"
        ),
    )
    result = run_check(cluster, agreeing_project)
    assert result.exit_code == 1, result.output
    assert re.search(r"differs\s+constraint app\.accounts\.accounts_balance_check", result.output)
    assert re.search(r"differs\s+data app\.settings", result.output)
    assert "2 differences" in result.output

    as_json = run_check(cluster, agreeing_project, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["equal"] is False
    assert report["migrations_from_template"] is False  # another project's migrations
    assert [d["object"] for d in report["differences"]] == [
        "constraint app.accounts.accounts_balance_check",
        "data app.settings",
    ]


def test_the_command_fails_on_a_schema_file_error_naming_it(cluster, agreeing_project):
    write_schema_file(agreeing_project, "accounts.sql", "create table app.x (id int);\n")
    result = run_check(cluster, agreeing_project)
    assert result.exit_code == 1
    assert 'supabase/schemas/accounts.sql:1: schema "app" does not exist' in result.output


# -- the template shortcut ---------------------------------------------------------------------


def test_the_test_template_less_its_tests_schema_is_a_fresh_deploy(cluster, project):
    """The check copies the test template and drops `tests` instead of deploying afresh; that
    must leave nothing of the test helpers behind."""
    copied, deployed = scratch_name("test_schema_copy"), scratch_name("test_schema_deploy")
    try:
        assert _from_migrations(cluster.admin_url(), copied, project)
        recreate_database(cluster.admin_url(), deployed)
        deploy(cluster.admin_url(deployed), project)
        assert (
            compare(snapshot(cluster.admin_url(deployed)), snapshot(cluster.admin_url(copied)))
            == []
        )
    finally:
        drop_database(cluster.admin_url(), copied)
        drop_database(cluster.admin_url(), deployed)
