"""The client fixture acts as an app client through PostgREST: one transaction per request,
the JWT's role and claims SET LOCAL, reads read-only, and a psql reproduction on failure."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors


@pytest.fixture(scope="module", autouse=True)
def notes_table(database_url):
    """A table with an owner policy, created once for this module's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            create table public.client_notes (
              id bigint generated always as identity primary key,
              owner_id uuid not null default auth.uid(),
              body text not null
            );
            alter table public.client_notes enable row level security;
            create policy "Users read their own notes" on public.client_notes
            for select to authenticated using (owner_id = (select auth.uid()));
            create policy "Users write their own notes" on public.client_notes
            for insert to authenticated with check (owner_id = (select auth.uid()));
            grant select, insert on public.client_notes to authenticated;
            """
        )


def test_as_user_sets_role_and_claims_as_postgrest_does(client, make_user):
    alice = make_user("client-alice")
    with client.as_user(alice, aal="aal2", headers={"X-Forwarded-For": "198.51.100.4"}) as req:
        assert req.scalar("select current_user") == "authenticated"
        assert req.scalar("select auth.uid()") == alice
        claims = req.scalar("select auth.jwt()")
        assert claims["role"] == "authenticated"
        assert claims["aal"] == "aal2"
        assert [entry["method"] for entry in claims["amr"]] == ["totp", "password"]
        headers = json.loads(req.scalar("select current_setting('request.headers')"))
        assert headers == {"x-forwarded-for": "198.51.100.4"}
        assert req.scalar("select current_setting('request.method')") == "POST"


def test_a_request_commits_and_rls_applies(client, make_user):
    alice, bob = make_user("rls-alice"), make_user("rls-bob")
    with client.as_user(alice) as req:
        req.execute("insert into public.client_notes (body) values ('alice wrote this')")
    with client.as_user(bob) as req:
        assert req.scalar("select count(*) from public.client_notes") == 0
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            req.execute(
                "insert into public.client_notes (owner_id, body) values (%s, 'forged')", (alice,)
            )
    with client.as_user(alice) as req:
        assert req.fetchall("select body from public.client_notes") == [("alice wrote this",)]


def test_get_requests_run_read_only(client, make_user):
    alice = make_user("get-alice")
    with client.as_user(alice, method="GET") as req:
        assert req.scalar("select current_setting('transaction_read_only')") == "on"
        with pytest.raises(errors.ReadOnlySqlTransaction):
            req.execute("insert into public.client_notes (body) values ('nope')")


def test_anon_and_service_requests(client, make_user):
    make_user("someone")
    with client.as_anon() as req:
        assert req.scalar("select current_user") == "anon"
        assert req.scalar("select auth.role()") == "anon"
        with pytest.raises(
            errors.InsufficientPrivilege, match="permission denied for table client_notes"
        ):
            req.execute("select * from public.client_notes")
    with client.as_service() as req:
        assert req.scalar("select current_user") == "service_role"
        assert req.scalar("select auth.uid()") is None


def test_a_failed_request_rolls_back_and_prints_its_reproduction(client, make_user, capsys):
    alice = make_user("repro-alice")

    def failing_request() -> None:
        with client.as_user(alice) as req:
            req.execute("insert into public.client_notes (body) values ('rolled back')")
            req.execute("select 1 / %s", (0,))

    with pytest.raises(errors.DivisionByZero):
        failing_request()
    printed = capsys.readouterr().err
    assert "-- reproduce this request by hand:" in printed
    assert "select set_config('role', 'authenticated', true);" in printed
    assert f'"sub": "{alice}"' in printed
    assert "insert into public.client_notes (body) values ('rolled back');" in printed
    assert "select 1 / 0;" in printed
    with client.as_user(alice) as req:
        assert req.scalar("select count(*) from public.client_notes") == 0


def test_each_module_gets_its_own_fresh_database(database, db):
    assert database.startswith("payguard_py_")
    row = db.execute("select count(*) from supabase_migrations.schema_migrations").fetchone()
    assert row is not None
    assert row[0] >= 1
    assert db.execute("select to_regnamespace('tests') is not null").fetchone() == (True,)


def test_requests_log_in_as_authenticator_and_cannot_take_an_ungranted_role(client):
    with client.as_anon() as req:
        assert req.scalar("select session_user") == "authenticator"

    def as_unlisted_role() -> None:
        with client.as_service("supabase_auth_admin"):
            pass

    with pytest.raises(
        errors.InsufficientPrivilege, match='permission denied to set role "supabase_auth_admin"'
    ):
        as_unlisted_role()
