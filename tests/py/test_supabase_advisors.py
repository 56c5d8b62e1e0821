"""The stand-in is faithful enough for the Supabase CLI's advisors (splinter) and linter
(plpgsql_check) to see what they would see on Supabase."""

from __future__ import annotations

import json

import psycopg
import pytest


@pytest.fixture
def deployed(deployed_database):
    """A database as deploying the project leaves it."""
    return deployed_database


def test_advisors_see_a_table_exposed_without_rls(cluster, deployed, scratch_project, supabase_cli):
    url = cluster.url(deployed)
    clean = supabase_cli(
        "db", "advisors", "--db-url", url, "--fail-on", "warn", workdir=scratch_project.root
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr

    with psycopg.connect(cluster.url(deployed), autocommit=True) as conn:
        # Unreachable (payguard's default privileges grant the API roles nothing): not flagged.
        conn.execute("create table public.bad_no_rls (id int primary key)")
    unreachable = supabase_cli(
        "db", "advisors", "--db-url", url, "--fail-on", "warn", workdir=scratch_project.root
    )
    assert unreachable.returncode == 0, unreachable.stdout + unreachable.stderr

    with psycopg.connect(cluster.url(deployed), autocommit=True) as conn:
        # Reachable through the API and without RLS: splinter's rls_disabled_in_public, which
        # it only checks in the schemas named by pgrst.db_schemas.
        conn.execute("grant select on public.bad_no_rls to anon")
    flagged = supabase_cli(
        "db",
        "advisors",
        "--db-url",
        url,
        "--fail-on",
        "warn",
        "--output-format",
        "json",
        workdir=scratch_project.root,
    )
    assert flagged.returncode != 0
    assert "rls_disabled_in_public" in flagged.stdout + flagged.stderr


def test_db_lint_checks_plpgsql_functions(cluster, deployed, scratch_project, supabase_cli):
    with psycopg.connect(cluster.url(deployed), autocommit=True) as conn:
        conn.execute(
            "create function public.bad_lint() returns int language plpgsql as "
            "$$ begin return (select missing_column from pg_class limit 1); end $$"
        )
    linted = supabase_cli(
        "db",
        "lint",
        "--db-url",
        cluster.url(deployed),
        "--level",
        "error",
        workdir=scratch_project.root,
    )
    assert linted.returncode == 0, linted.stderr
    issues = json.loads(linted.stdout[linted.stdout.index("[") :])
    assert issues[0]["function"] == "public.bad_lint"
    assert "missing_column" in issues[0]["issues"][0]["message"]
