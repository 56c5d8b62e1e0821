"""Policies as code: specs validate, check finds every drift (generate: test_policies_generate)."""

from __future__ import annotations

import shutil

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.errors import PayguardError
from payguard.policies.check import differences, differences_on
from payguard.policies.render import render
from payguard.policies.spec import load_specs, wrap_auth_calls
from payguard.project import Project


@pytest.fixture
def spec_project(scratch_project, project) -> Project:
    """A scratch project with the real specs and migrations."""
    shutil.copytree(project.policies_dir, scratch_project.policies_dir)
    for path in project.migrations_dir.glob("*.sql"):
        shutil.copy(path, scratch_project.migrations_dir / path.name)
    return scratch_project


def test_the_generator_wraps_auth_calls_and_names_roles(project):
    assert wrap_auth_calls("user_id = auth.uid()") == "user_id = (select auth.uid())"
    assert wrap_auth_calls("(select auth.uid()) = a") == "(select auth.uid()) = a"
    assert wrap_auth_calls("(auth.jwt() ->> 'aal')") == "((select auth.jwt()) ->> 'aal')"
    sql = render(load_specs(project.policies_dir))
    assert "auth.uid()" not in sql.replace("(select auth.uid())", "")
    assert "auth.jwt()" not in sql.replace("(select auth.jwt())", "")
    for statement in sql.split("create policy")[1:]:
        assert "\nto " in statement


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace('rls = "forced"', 'rls = "off"'), "rls: 'off' is not one of"),
        (lambda s: s + '\n[grants2]\nanon = ["select"]\n', "Additional properties"),
        (
            lambda s: s.replace('authenticated = ["select"]', 'authenticated = ["selekt"]'),
            "does not match",
        ),
        (
            lambda s: (
                s + '\n[[policies]]\nname = "Users can read a thing"\ncommand = "insert"\n'
                'to = ["authenticated"]\nusing = "true"\n'
            ),
            "an insert policy has a check and no using",
        ),
        (
            lambda s: (
                s + '\n[[policies]]\nname = "Users can read their own subscriptions"\n'
                'command = "select"\nto = ["authenticated"]\nusing = "true"\n'
            ),
            "the name is used twice",
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_reason(spec_project, edit, message):
    spec = spec_project.policies_dir / "subscriptions.toml"
    spec.write_text(edit(spec.read_text()))
    with pytest.raises(PayguardError, match=message):
        load_specs(spec_project.policies_dir)


def test_check_passes_on_a_fresh_deploy_and_finds_each_drift(admin_url, project):
    specs = load_specs(project.policies_dir)
    assert differences(admin_url, specs) == []
    drift = [
        'drop policy "Users can read their own payment methods" on public.payment_methods',
        'create policy "Anyone can read webhook events" on public.webhook_events '
        "for select to authenticated using (true)",
        'alter policy "admin can read all disputes" on public.disputes using (false)',
        "grant delete on public.withdrawals to authenticated",
        "grant update (status) on public.payment_transactions to authenticated",
        "alter table public.subscriptions no force row level security",
        "grant update on public.users to public",
        "revoke select (brand) on public.payment_methods from authenticated",
        "grant select (processor_payment_method_id_sealed) on public.payment_methods "
        "to authenticated",
        "grant select on public.payment_methods to authenticated with grant option",
        "create view public.all_payment_methods as select * from public.payment_methods",
        "grant payment_service to authenticated",
        "alter table public.payment_methods disable trigger refuse_card_data",
        "grant execute on function private.setting(text) to public",
        "create function private.unpinned() returns int language sql security definer "
        "as 'select 1'",
    ]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("begin")
        for statement in drift:
            conn.execute(statement)
        found = differences_on(conn, specs)
        conn.execute("rollback")
    assert found == [
        "public.disputes: policy \"admin can read all disputes\": using is 'false', "
        "the spec says 'true'",
        'public.payment_methods: policy "Users can read their own payment methods" is missing',
        "public.payment_methods: authenticated has select (processor_payment_method_id_sealed), "
        "which the spec does not grant",
        "public.payment_methods: authenticated has select with grant option, "
        "which the spec does not grant",
        "public.payment_methods: authenticated lacks select (brand), which the spec grants",
        "public.payment_transactions: authenticated has update (status), "
        "which the spec does not grant",
        "public.subscriptions: forced row level security is off, the spec says on",
        "public.users: public has update, which the spec does not grant",
        'public.webhook_events: policy "Anyone can read webhook events" is not in the spec',
        "public.withdrawals: authenticated has delete, which the spec does not grant",
        "public.all_payment_methods: a view in the API schema, which no spec covers",
        "authenticated is a member of payment_service, so it can act as payment_service",
        "public.payment_methods: trigger refuse_card_data is disabled",
        "private.setting(text): anyone (PUBLIC) may execute it",
        "private.unpinned(): anyone (PUBLIC) may execute it",
        "private.unpinned(): security definer without search_path set",
    ]
    assert differences(admin_url, specs) == []


def test_check_cli_exits_1_and_lists_the_differences(admin_url, project):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("grant select on public.webhook_events to anon")
    try:
        result = CliRunner().invoke(
            app, ["--workdir", str(project.root), "policies", "check", "--db-url", admin_url]
        )
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("revoke select on public.webhook_events from anon")
    assert result.exit_code == 1
    assert "public.webhook_events: anon has select, which the spec does not grant" in result.output
    assert "1 differences between the database and the specs" in result.output


def test_check_reports_a_table_without_a_spec(admin_url, project):
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("create table public.unreviewed (id int)")
    try:
        found = differences(admin_url, load_specs(project.policies_dir))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("drop table public.unreviewed")
    assert found == ["public.unreviewed: no policy spec (add policies/unreviewed.toml)"]
