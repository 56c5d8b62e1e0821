"""The card-data migrations on a database with history: phone numbers normalised to E.164 or
named when they cannot be, card data already stored in a form the guard now reads named
(never shown) until someone clears it, and that correction recorded without the card
number."""

from __future__ import annotations

import shutil
import uuid

import psycopg
import pytest

from payguard.deploy import deploy
from payguard.errors import PayguardError
from payguard.project import Project

FIRST = "20261204230000_card_number_forms.sql"
PHONES = "20261204230300_users_phone_e164.sql"
ALREADY_STORED = "20261204230400_card_data_already_stored.sql"


@pytest.fixture
def before_card_forms(cluster, empty_database, project: Project, scratch_project: Project):
    """A database deployed with every migration before FIRST; its admin URL."""
    for path in sorted(project.migrations_dir.glob("*.sql")):
        if path.name < FIRST:
            shutil.copy(path, scratch_project.migrations_dir)
    admin = cluster.admin_url(empty_database)
    deploy(admin, scratch_project)
    return admin


def add_the_rest(project: Project, scratch_project: Project, admin: str) -> None:
    for path in sorted(project.migrations_dir.glob("*.sql")):
        if path.name >= FIRST:
            shutil.copy(path, scratch_project.migrations_dir)
    deploy(admin, scratch_project)


def user(conn, phone: str | None) -> uuid.UUID:
    user_id = uuid.uuid4()
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated', "
        "'authenticated', %s)",
        (user_id, f"{user_id}@example.test"),
    )
    conn.execute("update public.users set phone = %s where id = %s", (phone, user_id))
    return user_id


def from_card_forms_on(project) -> list[str]:
    """The names of the project's migrations from the card-number forms on, in order."""
    return [
        path.stem.split("_", 1)[1]
        for path in sorted(project.migrations_dir.glob("*.sql"))
        if path.stem >= "20261204230000"
    ]


def applied(conn) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "select name from supabase_migrations.schema_migrations "
            "where version >= '20261204230000' order by version"
        ).fetchall()
    ]


def test_phone_numbers_are_normalised_and_stored_card_data_is_named_until_cleared(
    before_card_forms, project, scratch_project
):
    admin = before_card_forms
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("set role postgres")
        spaced = user(conn, "+1 (415) 555-0123")
        international = user(conn, "0044 20 7946 0958")
        empty = user(conn, "  ")
        owner = user(conn, None)
        project_id = uuid.uuid4()
        # written when the guard did not read en dashes
        conn.execute(
            "insert into public.projects (id, owner_id, title, description) "
            "values (%s, %s, 'Kitchen', %s)",
            (project_id, owner, "pay with 4242\u20134242\u20134242\u20134242"),
        )

    with pytest.raises(PayguardError) as refused:
        add_the_rest(project, scratch_project, admin)
    message = str(refused.value)
    assert ALREADY_STORED in message
    assert f"public.projects.description ({project_id})" in message
    assert "4242" not in message.replace(str(project_id), "")

    with psycopg.connect(admin, autocommit=True) as conn:
        # everything before it applied, each in its own transaction
        assert applied(conn) == [
            "card_number_forms",
            "audit_card_data",
            "audit_request_actor",
            "users_phone_e164",
        ]
        phones = dict(
            conn.execute(
                "select id, phone from public.users where id = any(%s)",
                ([spaced, international, empty],),
            ).fetchall()
        )
        assert phones == {spaced: "+14155550123", international: "+442079460958", empty: None}
        # someone clears the description; the audit trail records it without the card number
        conn.execute("set role postgres")
        mark = conn.execute("select max(seq) from public.payment_audit_logs").fetchone()[0]
        conn.execute(
            "update public.projects set description = 'pay with the card on file' where id = %s",
            (project_id,),
        )
        old, new = conn.execute(
            "select old_values ->> 'description', new_values ->> 'description' "
            "from public.payment_audit_logs where seq > %s and entity_id = %s",
            (mark, str(project_id)),
        ).fetchone()
        assert (old, new) == ("[removed: it held card data]", "pay with the card on file")

    add_the_rest(project, scratch_project, admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        assert applied(conn) == from_card_forms_on(project)


def test_a_phone_number_that_cannot_be_read_as_e164_stops_the_migration(
    before_card_forms, project, scratch_project
):
    admin = before_card_forms
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("set role postgres")
        local = user(conn, "555-0100")
        # 15 digits once normalised, and they pass Luhn: an American Express test number
        card_like = user(conn, "+37 828 224 631 0005")
        fine = user(conn, "+14155550199")

    with pytest.raises(PayguardError) as refused:
        add_the_rest(project, scratch_project, admin)
    message = str(refused.value)
    assert PHONES in message
    assert str(local) in message
    assert str(card_like) in message
    assert str(fine) not in message
    ids = (str(local), str(card_like))
    assert "555" not in message.replace(ids[0], "").replace(ids[1], "")
    assert "8282" not in message.replace(ids[0], "").replace(ids[1], "")

    with psycopg.connect(admin, autocommit=True) as conn:
        assert "users_phone_e164" not in applied(conn)
        conn.execute("set role postgres")
        conn.execute(
            "update public.users set phone = null where id = any(%s)", ([local, card_like],)
        )
    add_the_rest(project, scratch_project, admin)
    with psycopg.connect(admin, autocommit=True) as conn:
        assert applied(conn) == from_card_forms_on(project)
