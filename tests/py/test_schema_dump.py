"""payguard schema (the current schema by domain) and payguard describe's functions and
triggers, on a database deployed from a scratch project whose schema files name the domains."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.cluster import Cluster
from payguard.databases import drop_database, recreate_database
from payguard.deploy import deploy
from payguard.describe import describe
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.schema.dump import UNASSIGNED, Domain, dump
from payguard.schema.server import scratch_name

ACCOUNTS = """\
create schema private;
create table private.accounts (
  id bigint primary key,
  owner_id uuid not null,
  balance bigint not null default 0,
  constraint accounts_balance_check check (balance >= 0)
);
alter table private.accounts enable row level security;
"""

RULES = """\
create type private.kind as enum ('a', 'b');
create function private.is_owner(owner uuid) returns boolean
language sql stable security definer set search_path = ''
as $$ select owner = (select auth.uid()) $$;
create policy "owners read their accounts" on private.accounts
for select to authenticated using (private.is_owner(owner_id));
-- the trigger function
create function private.touch() returns trigger language plpgsql
as $$ begin return new; end $$;
create trigger accounts_touch before update on private.accounts
for each row execute function private.touch();
"""

ORPHAN = "create function private.orphan() returns int language sql as $$ select 1 $$;\n"
_SCHEMA_PATHS = re.compile(r"^schema_paths\s*=\s*\[.*?\]\s*$\n?", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def deployed(cluster: Cluster, tmp_path_factory, project: Project) -> Iterator[tuple[str, Project]]:
    """A database deployed from one migration (the two domains' statements and one more
    function), and the project whose schema files are the two domains, rules listed first."""
    root = tmp_path_factory.mktemp("schema_dump")
    supabase = root / "supabase"
    (supabase / "migrations").mkdir(parents=True)
    (supabase / "schemas").mkdir()
    config = _SCHEMA_PATHS.sub("", (project.supabase_dir / "config.toml").read_text())
    config = config.replace(
        "[db.migrations]\n",
        '[db.migrations]\nschema_paths = ["./schemas/rules.sql", "./schemas/accounts.sql"]\n',
    )
    (supabase / "config.toml").write_text(config)
    (supabase / "schemas" / "accounts.sql").write_text(ACCOUNTS)
    (supabase / "schemas" / "rules.sql").write_text(RULES)
    (supabase / "migrations" / "20260101000000_all.sql").write_text(ACCOUNTS + RULES + ORPHAN)
    scratch = Project(root)
    name = scratch_name("test_schema_dump")
    try:
        recreate_database(cluster.admin_url(), name)
        deploy(cluster.admin_url(name), scratch)
        yield cluster.admin_url(name), scratch
    finally:
        drop_database(cluster.admin_url(), name)


def by_name(domains: list[Domain]) -> dict[str, Domain]:
    return {d.name: d for d in domains}


def test_domains_come_in_config_order_then_unassigned(deployed):
    url, scratch = deployed
    domains = dump(url, scratch)
    assert [d.name for d in domains] == ["rules", "accounts", UNASSIGNED]
    assert [d.file for d in domains] == [
        "supabase/schemas/rules.sql",
        "supabase/schemas/accounts.sql",
        None,
    ]


def test_each_object_is_in_the_domain_whose_file_creates_it(deployed):
    url, scratch = deployed
    domains = by_name(dump(url, scratch))
    assert [(t.schema, t.name) for t in domains["accounts"].tables] == [("private", "accounts")]
    assert [t.name for t in domains["rules"].types] == ["kind"]
    assert [f.name for f in domains["rules"].functions] == ["is_owner", "touch"]
    assert [f.name for f in domains[UNASSIGNED].functions] == ["orphan"]
    assert domains["rules"].tables == []
    assert domains[UNASSIGNED].tables == []


def test_a_table_shows_its_columns_constraints_and_policies(deployed):
    url, scratch = deployed
    [table] = by_name(dump(url, scratch))["accounts"].tables
    assert [(c.name, c.type, c.not_null, c.default) for c in table.columns] == [
        ("id", "bigint", True, None),
        ("owner_id", "uuid", True, None),
        ("balance", "bigint", True, "0"),
    ]
    assert {c["name"]: c["definition"] for c in table.constraints} == {
        "accounts_balance_check": "CHECK ((balance >= 0))",
        "accounts_pkey": "PRIMARY KEY (id)",
    }
    assert table.rls is True
    assert table.force_rls is False
    assert table.policies == [
        {"name": "owners read their accounts", "command": "select", "roles": "authenticated"}
    ]


def test_a_function_shows_its_traits_body_and_the_triggers_and_policies_calling_it(deployed):
    url, scratch = deployed
    functions = {f.name: f for f in by_name(dump(url, scratch))["rules"].functions}
    owner = functions["is_owner"]
    assert owner.signature == "private.is_owner(owner uuid)"
    assert (owner.language, owner.security_definer, owner.search_path) == ("sql", True, '""')
    assert owner.body.strip() == "select owner = (select auth.uid())"
    assert [(c.kind, c.table, c.name) for c in owner.callers] == [
        ("policy", "private.accounts", "owners read their accounts")
    ]
    touch = functions["touch"]
    assert touch.security_definer is False
    assert touch.search_path is None
    assert [(c.kind, c.table, c.name, c.detail) for c in touch.callers] == [
        ("trigger", "private.accounts", "accounts_touch", "before update, for each row")
    ]


def test_one_domain_and_an_unknown_one(deployed):
    url, scratch = deployed
    assert [d.name for d in dump(url, scratch, domain="accounts")] == ["accounts"]
    with pytest.raises(PayguardError, match=r"no domain 'ledger'; the domains are: rules, "):
        dump(url, scratch, domain="ledger")


def test_the_command_prints_the_domain_or_json(deployed):
    url, scratch = deployed
    base = ["--workdir", str(scratch.root), "schema", "--db-url", url]
    text = CliRunner().invoke(app, [*base, "--domain", "rules"])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("== rules (supabase/schemas/rules.sql)\n")
    assert "function private.is_owner(owner uuid) returns boolean\n" in text.output
    assert '  sql, stable, security definer, search_path=""\n' in text.output
    assert (
        '  called by policy private.accounts."owners read their accounts" (select)' in text.output
    )
    assert "  called by trigger private.accounts.accounts_touch (before update" in text.output
    assert "== accounts" not in text.output

    tables = CliRunner().invoke(app, [*base, "--domain", "accounts"])
    assert tables.exit_code == 0, tables.output
    assert "table private.accounts (RLS on)\n  id bigint not null\n" in tables.output
    assert "  balance bigint not null default 0\n" in tables.output
    assert "  constraint accounts_balance_check: CHECK ((balance >= 0))\n" in tables.output
    assert '  policy "owners read their accounts": select to authenticated\n' in tables.output

    as_json = CliRunner().invoke(app, [*base, "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert [d["name"] for d in json.loads(as_json.output)] == ["rules", "accounts", UNASSIGNED]


def test_describe_lists_functions_and_triggers_but_not_extensions_functions(deployed):
    url, _ = deployed
    found = describe(url)
    functions = {(f["schema"], f["name"]): f for f in found.functions}
    assert functions[("private", "is_owner")] == {
        "schema": "private",
        "name": "is_owner",
        "args": "owner uuid",
        "kind": "function",
        "language": "sql",
        "security_definer": True,
    }
    assert functions[("private", "touch")]["security_definer"] is False
    assert not [f for f in found.functions if f["schema"] == "extensions"]  # pgTAP's
    assert {
        "schema": "private",
        "table": "accounts",
        "trigger": "accounts_touch",
        "timing": "before",
        "events": ["update"],
        "level": "row",
        "function": "private.touch()",
        "enabled": True,
    } in found.triggers

    text = CliRunner().invoke(app, ["describe", "--db-url", url])
    assert text.exit_code == 0, text.output
    assert "Functions" in text.output
    assert "accounts_touch" in text.output
