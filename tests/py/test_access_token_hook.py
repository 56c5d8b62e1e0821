"""The Custom Access Token Hook as Supabase's auth server calls it (supabase_auth_admin, over
its own connection): the claims it returns put staff in their database role, and the requests
made with them meet the policies of that role."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from payguard.testing.auth_hook import issued_claims
from payguard.testing.request import Request
from payguard.testing.tokens import add_payout_method


@pytest.fixture
def people(db, make_user):
    hana, carl, ada, bea = make_user(), make_user(), make_user(), make_user()
    db.execute("update public.users set role = 'contractor' where id = %s", (carl,))
    db.execute("update public.users set role = 'admin' where id in (%s, %s)", (ada, bea))
    db.execute(
        "update auth.users set banned_until = now() + interval '1 hour' where id = %s", (bea,)
    )
    add_payout_method(db, carl, f"acct_Hook{uuid.uuid4().hex[:12]}", f"ba_{uuid.uuid4().hex[:12]}")
    return {"hana": hana, "carl": carl, "ada": ada, "bea": bea}


def payout_methods_seen(client, claims):
    with client.request(Request(claims["role"], claims, method="GET")) as req:
        return req.scalar("select count(*) from public.payout_methods")


def test_the_auth_server_gets_staff_roles_from_the_hook(admin_url, client, db, people):
    ada = issued_claims(admin_url, people["ada"], aal="aal2")
    carl = issued_claims(admin_url, people["carl"], aal="aal2")
    hana = issued_claims(admin_url, people["hana"])
    bea = issued_claims(admin_url, people["bea"], aal="aal2")
    assert (ada["role"], ada["user_role"]) == ("admin", "admin")
    assert (carl["role"], carl["user_role"]) == ("authenticated", "contractor")
    assert (hana["role"], hana["user_role"]) == ("authenticated", "homeowner")
    assert (bea["role"], bea["user_role"]) == ("authenticated", "admin"), "banned: no staff role"
    assert (ada["sub"], ada["aal"]) == (str(people["ada"]), "aal2")

    # The claims drive the policies: the admin reads every payout method, the contractor his
    # own, the homeowner and the banned admin none.
    everyone = db.execute("select count(*) from public.payout_methods").fetchone()[0]
    assert everyone >= 1
    assert payout_methods_seen(client, ada) == everyone
    assert payout_methods_seen(client, carl) == 1
    assert payout_methods_seen(client, hana) == 0
    assert payout_methods_seen(client, bea) == 0


def test_the_auth_server_role_reads_no_table_itself(admin_url, people):
    """The hook reads the profile as its definer: supabase_auth_admin has no grant on it."""
    with psycopg.connect(admin_url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local role supabase_auth_admin")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select role from public.users").fetchall()
