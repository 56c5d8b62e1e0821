"""`payguard keys rotate`, `status` and `retire` on a real database: plain-text tokens are
sealed, sealed ones re-sealed under a new key while reads keep working, a rotation killed half
way resumes without losing or double-sealing a token, and a row that does not hold what it
claims stops the rotation with its key and never a token."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from payguard.cluster import APP_ROLE, Cluster
from payguard.databases import drop_database, recreate_database
from payguard.deploy import deploy
from payguard.envelope import KeySet, decrypt, encrypt
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.token_columns import SEALED_COLUMNS, TOKEN_COLUMNS
from payguard.token_index import lookup
from payguard.token_keys import new_entry
from payguard.token_reindex import reindex
from payguard.token_rotation import RotationError, rotate, rows_sealed_under, status, to_do
from payguard.token_scan import scan

OLD = new_entry("k-old")
NEW = new_entry("k-new")
INDEX = new_entry("i-one")
OLD_KEYS = KeySet.parse(OLD)
NEW_KEYS = KeySet.parse(f"{NEW},{OLD}")
INDEX_KEYS = KeySet.parse(INDEX)


@pytest.fixture
def url(cluster: Cluster, fresh_database: str) -> str:
    return cluster.socket_url(APP_ROLE, fresh_database)


def seed(url: str, users: int) -> dict[str, list[tuple[str, str]]]:
    """`users` users, each with a customer, two cards, a connected account and a payout
    method, sealed under OLD with their lookups, as the functions store them: (row key,
    token) by column name."""
    held: dict[str, list[tuple[str, str]]] = {c.name: [] for c in TOKEN_COLUMNS}

    def sealed(token: str, table: str, column: str, key: object) -> Jsonb:
        return Jsonb(encrypt(OLD_KEYS, token, table=table, column=column, row_id=str(key)))

    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(users):
            user = conn.execute("select tests.create_supabase_user(%s)", (f"rot-{n}",)).fetchone()[
                0
            ]  # type: ignore[index]
            customer = f"cus_Rot{n:06d}x"
            account = f"acct_Rot{n:06d}x"
            conn.execute(
                "insert into public.processor_customers "
                "(user_id, processor_customer_id_sealed, processor_customer_id_lookup) "
                "values (%s, %s, %s)",
                (
                    user,
                    sealed(customer, "processor_customers", "processor_customer_id", user),
                    lookup(INDEX_KEYS, customer),
                ),
            )
            held["processor_customers.processor_customer_id"].append((str(user), customer))
            for card in range(2):
                method = uuid.uuid4()
                token = f"pm_Rot{n:06d}c{card}"
                conn.execute(
                    "insert into public.payment_methods (id, user_id, type, "
                    "processor_payment_method_id_sealed, processor_payment_method_id_lookup, "
                    "processor_customer_id_lookup) values (%s, %s, 'credit_card', %s, %s, %s)",
                    (
                        method,
                        user,
                        sealed(token, "payment_methods", "processor_payment_method_id", method),
                        lookup(INDEX_KEYS, token),
                        lookup(INDEX_KEYS, customer),
                    ),
                )
                held["payment_methods.processor_payment_method_id"].append((str(method), token))
                held["payment_methods.processor_customer_id"].append((str(method), customer))
            account_id = uuid.uuid4()
            conn.execute(
                "insert into public.processor_accounts "
                "(id, user_id, processor_account_id_sealed, processor_account_id_lookup) "
                "values (%s, %s, %s, %s)",
                (
                    account_id,
                    user,
                    sealed(account, "processor_accounts", "processor_account_id", account_id),
                    lookup(INDEX_KEYS, account),
                ),
            )
            payout = uuid.uuid4()
            external = f"ba_Rot{n:06d}x"
            conn.execute(
                "insert into public.payout_methods (id, user_id, type, currency, "
                "processor_external_account_id_sealed, processor_external_account_id_lookup, "
                "processor_account_id_lookup) values (%s, %s, 'bank_account', 'USD', %s, %s, %s)",
                (
                    payout,
                    user,
                    sealed(external, "payout_methods", "processor_external_account_id", payout),
                    lookup(INDEX_KEYS, external),
                    lookup(INDEX_KEYS, account),
                ),
            )
            held["processor_accounts.processor_account_id"].append((str(account_id), account))
            held["payout_methods.processor_external_account_id"].append((str(payout), external))
            held["payout_methods.processor_account_id"].append((str(payout), account))
    return held


def stored(url: str) -> dict[str, dict[str, tuple[Any, str | None]]]:
    """(sealed value, lookup) by row key, by column name."""
    found: dict[str, dict[str, tuple[Any, str | None]]] = {}
    with psycopg.connect(url) as conn:
        for column in TOKEN_COLUMNS:
            rows = conn.execute(
                f"select {column.key}::text, {column.sealed or 'null'}, "
                f"{column.lookup}::text from public.{column.table}"
            ).fetchall()
            found[column.name] = {key: (value, found_lookup) for key, value, found_lookup in rows}
    return found


def assert_all_sealed(
    url: str, held: dict[str, list[tuple[str, str]]], keys: KeySet, kid: str
) -> None:
    """Every token opens, under `keys`, to what the row held, sealed under `kid`; every
    lookup is its token's."""
    found = stored(url)
    for column in TOKEN_COLUMNS:
        rows = found[column.name]
        for key, token in held[column.name]:
            sealed, found_lookup = rows[key]
            assert found_lookup == lookup(INDEX_KEYS, token), (column.name, key)
            if column.sealed is None:
                assert sealed is None
                continue
            assert sealed["kid"] == kid, (column.name, key)
            opened = decrypt(keys, sealed, table=column.table, column=column.plain, row_id=key)
            assert opened == token, (column.name, key)


def test_rotation_reseals_every_token_under_a_new_key(url: str) -> None:
    held = seed(url, 6)
    sealed_values = sum(len(held[c.name]) for c in SEALED_COLUMNS)
    before = {c.name: c for c in status(url)}
    assert before["payment_methods.processor_payment_method_id"].sealed_by_kid == {"k-old": 12}
    assert before["payment_methods.processor_customer_id"].lookups_by_kid == {"i-one": 12}
    assert all(c.to_do == 0 for c in before.values()), "every row is sealed and looked up"
    assert to_do(url, "k-new") == sealed_values
    assert_all_sealed(url, held, OLD_KEYS, "k-old")

    run = rotate(url, NEW_KEYS, INDEX_KEYS, batch_size=5)
    assert (run.sealed, run.resumed) == (sealed_values, False)  # lookups are kept
    # Under the new key alone: nothing is left under the old one.
    assert_all_sealed(url, held, KeySet.parse(NEW), "k-new")
    assert rows_sealed_under(url, "k-old") == {}
    assert rotate(url, NEW_KEYS, INDEX_KEYS).sealed == 0

    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "select target_kid, status, tokens_sealed from private.token_key_rotations "
            "order by created_at"
        ).fetchall()
        assert runs == [("k-new", "finished", sealed_values), ("k-new", "finished", 0)]
        audited = conn.execute(
            "select operation, new_values ->> 'status' from public.payment_audit_logs "
            "where entity_type = 'token_key_rotations' order by seq"
        ).fetchall()
        assert ("INSERT", "running") in audited
        assert ("UPDATE", "finished") in audited
        # No audit row holds a token, a sealed value or a lookup in any readable form.
        trail = conn.execute(
            "select string_agg(coalesce(old_values::text, '') || coalesce(new_values::text, ''),"
            " ' ') from public.payment_audit_logs"
        ).fetchone()[0]  # type: ignore[index]
    for rows in held.values():
        for _, token in rows:
            assert token not in trail
            assert lookup(INDEX_KEYS, token).partition(":")[2] not in trail
    for by_key in stored(url).values():
        for sealed, _ in by_key.values():
            if sealed is not None:
                assert sealed["ciphertext"] not in trail
                assert sealed["wrapped_key"] not in trail


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "payguard", "keys", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_a_rotation_killed_half_way_resumes_and_reads_never_fail(url: str, tmp_path: Path) -> None:
    held = seed(url, 20)
    key_file, index_file = tmp_path / "keys", tmp_path / "index"
    key_file.write_text(f"{NEW}\n{OLD}\n")
    index_file.write_text(INDEX)
    files = ["--key-file", str(key_file), "--index-key-file", str(index_file)]

    # Reads decrypt every payment method all along, with the key set the functions hold
    # during a rotation (new and old).
    stop = threading.Event()
    reads: list[int] = []
    failures: list[Exception] = []

    def read_all() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                try:
                    for key, sealed in conn.execute(
                        "select id::text, processor_payment_method_id_sealed "
                        "from public.payment_methods"
                    ):
                        decrypt(
                            NEW_KEYS,
                            sealed,
                            table="payment_methods",
                            column="processor_payment_method_id",
                            row_id=key,
                        )
                    reads.append(1)
                except Exception as exc:  # reported below
                    failures.append(exc)
                    return

    reader = threading.Thread(target=read_all)
    reader.start()
    # The last payment methods are held by another transaction: the rotation seals the
    # customers, then the payment methods up to them, and waits there until it is killed.
    with psycopg.connect(url) as blocker:
        blocker.execute("select id from public.payment_methods order by id desc limit 3 for update")
        process = run_cli("rotate", "--db-url", url, "--batch-size", "4", *files)
        deadline = time.monotonic() + 30
        with psycopg.connect(url, autocommit=True) as watch:
            while True:
                sealed_so_far = watch.execute(
                    "select tokens_sealed from private.token_key_rotations where status = 'running'"
                ).fetchone()
                waiting = watch.execute(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                    "and datname = current_database()"
                ).fetchone()[0]  # type: ignore[index]
                if sealed_so_far and sealed_so_far[0] > 0 and waiting:
                    break
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the rotation never reached the held rows"
                time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        blocker.rollback()
    half = {c.name: c for c in status(url)}
    assert half["processor_customers.processor_customer_id"].sealed_by_kid == {"k-new": 20}
    by_kid = half["payment_methods.processor_payment_method_id"].sealed_by_kid
    assert by_kid.get("k-old", 0) >= 3, by_kid
    assert by_kid.get("k-new", 0) > 0, by_kid
    assert sum(by_kid.values()) == 40

    resumed = run_cli("rotate", "--db-url", url, "--json", *files)
    output, errors = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, errors
    report = json.loads(output)
    assert report["resumed"] is True
    assert report["target_kid"] == "k-new"
    stop.set()
    reader.join()
    assert not failures, failures
    assert reads, "the reader never completed a pass"

    assert_all_sealed(url, held, KeySet.parse(NEW), "k-new")
    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "select status, tokens_sealed from private.token_key_rotations "
            "where target_kid = 'k-new'"
        ).fetchall()
    # One run, killed and resumed: it counts each token once (the killed batch rolled back).
    sealed_values = sum(len(held[c.name]) for c in SEALED_COLUMNS)
    assert runs == [("finished", sealed_values)]

    retire_old = run_cli("retire", "k-old", "--db-url", url)
    assert retire_old.wait(timeout=30) == 0, retire_old.communicate()
    current = run_cli("retire", "k-new", "--db-url", url, "--key-file", str(key_file))
    _, errors = current.communicate(timeout=30)
    assert current.returncode != 0
    assert "k-new is the current key" in errors
    token = held["payment_methods.processor_payment_method_id"][0][1]
    found = run_cli("lookup", token, "--index-key-file", str(index_file))
    output, _ = found.communicate(timeout=30)
    assert output.split() == [lookup(INDEX_KEYS, token)]
    retire_new = run_cli("retire", "k-new", "--db-url", url, "--json")
    output, _ = retire_new.communicate(timeout=30)
    assert retire_new.returncode == 1
    assert (
        json.loads(output)["sealed_under_it"]["payment_methods.processor_payment_method_id"] == 40
    )


@pytest.fixture
def sealed_url(url: str) -> tuple[str, dict[str, list[tuple[str, str]]]]:
    return url, seed(url, 2)


def test_an_envelope_moved_to_another_row_stops_the_rotation(
    sealed_url: tuple[str, dict[str, list[tuple[str, str]]]],
) -> None:
    url, held = sealed_url
    (first, first_token), (second, _) = held["payment_methods.processor_payment_method_id"][:2]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter table public.payment_methods disable trigger keep_token_lookups")
        conn.execute(
            "update public.payment_methods as t set processor_payment_method_id_sealed = "
            "(select processor_payment_method_id_sealed from public.payment_methods "
            "where id = %s) where t.id = %s",
            (first, second),
        )
    with pytest.raises(RotationError) as raised:
        rotate(url, NEW_KEYS, INDEX_KEYS)
    message = str(raised.value)
    assert f"payment_methods.processor_payment_method_id of row {second}" in message
    assert "does not open" in message
    assert first_token not in message


def test_a_sealed_value_that_is_not_its_lookups_token_stops_the_rotation(
    sealed_url: tuple[str, dict[str, list[tuple[str, str]]]],
) -> None:
    url, held = sealed_url
    key, token = held["processor_customers.processor_customer_id"][0]
    other = encrypt(
        OLD_KEYS,
        "cus_Somebody0ther",
        table="processor_customers",
        column="processor_customer_id",
        row_id=key,
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update public.processor_customers set processor_customer_id_sealed = %s "
            "where user_id = %s",
            (Jsonb(other), key),
        )
    with pytest.raises(RotationError, match="its lookup is not its token's") as raised:
        rotate(url, NEW_KEYS, INDEX_KEYS)
    assert token not in str(raised.value)
    assert "Somebody" not in str(raised.value)


def test_a_value_sealed_twice_is_refused_not_sealed_a_third_time(
    sealed_url: tuple[str, dict[str, list[tuple[str, str]]]],
) -> None:
    url, held = sealed_url
    key, _ = held["processor_accounts.processor_account_id"][0]
    with psycopg.connect(url, autocommit=True) as conn:
        sealed = conn.execute(
            "select processor_account_id_sealed from public.processor_accounts where id = %s",
            (key,),
        ).fetchone()[0]  # type: ignore[index]
        # Sealed again, whole, the envelope would not fit the column's form; its ciphertext
        # stands for it: a value that is not a token.
        twice = encrypt(
            OLD_KEYS,
            sealed["ciphertext"],
            table="processor_accounts",
            column="processor_account_id",
            row_id=key,
        )
        conn.execute(
            "update public.processor_accounts set processor_account_id_sealed = %s where id = %s",
            (Jsonb(twice), key),
        )
    with pytest.raises(RotationError, match="holds no token of the column's form"):
        rotate(url, NEW_KEYS, INDEX_KEYS)


def test_an_unknown_key_id_and_a_second_target_are_clear_errors(
    sealed_url: tuple[str, dict[str, list[tuple[str, str]]]],
) -> None:
    url, _ = sealed_url
    with pytest.raises(RotationError, match="does not open: no key 'k-old' among the keys"):
        rotate(url, KeySet.parse(NEW), INDEX_KEYS)
    # That run stopped: it is still running, to k-new; another target waits for it.
    with pytest.raises(RotationError, match="a rotation to key k-new is running"):
        rotate(url, KeySet.parse(new_entry("k-third")), INDEX_KEYS)
    assert rotate(url, NEW_KEYS, INDEX_KEYS).resumed is True
    with pytest.raises(RotationError, match="one key serves both"):
        rotate(url, KeySet.parse(INDEX), INDEX_KEYS)


def test_the_scan_names_every_column_that_holds_a_token_in_the_clear(
    cluster: Cluster, fresh_database: str
) -> None:
    url = cluster.socket_url(APP_ROLE, fresh_database)
    admin = cluster.admin_url(fresh_database)
    held = seed(url, 3)
    found = {(f.table, f.column): f.rows for f in scan(admin)}
    assert found == {}, "tokens stored as the functions store them hold no token in the clear"
    user = held["processor_customers.processor_customer_id"][0][0]
    with psycopg.connect(admin, autocommit=True) as conn:
        # A token in free text, nested in JSON, in a private table: each is found.
        conn.execute(
            "insert into public.notifications (user_id, event, title) "
            "values (%s, 'payment_method.saved', 'your card pm_Leak0001x is saved')",
            (user,),
        )
        conn.execute(
            "update public.payment_methods set metadata = %s where id = %s",
            (
                Jsonb({"deep": [{"account": "acct_Leak0002x"}]}),
                held["payment_methods.processor_payment_method_id"][0][0],
            ),
        )
        conn.execute(
            "insert into private.settings (key, value, description) "
            "values ('leak', '\"ba_Leak0003x\"', 'a token where none belongs')"
        )
        # Ids that are not credentials, and words that only begin like one, are not.
        conn.execute(
            "insert into public.notifications (user_id, event, title) "
            "values (%s, 'payment.paid', "
            "'pi_3Abcdef12 and po_1Abcdef12 by card_present, card_payments, cus_ab')",
            (user,),
        )
    leaked = {(f.table, f.column): f.rows for f in scan(admin)}
    assert {k: v for k, v in leaked.items() if k not in found} == {
        ("public.notifications", "title"): 1,
        ("public.payment_methods", "metadata"): 1,
        ("private.settings", "value"): 1,
        # and the audit row of the settings' insert, which copies what it was given (a payment
        # method's metadata is personal data: its audit row holds a keyed fingerprint of it)
        ("public.payment_audit_logs", "new_values"): 1,
    }
    result = run_cli("scan", "--db-url", admin, "--json")
    output, _ = result.communicate(timeout=60)
    assert result.returncode == 1
    assert "Leak" not in output
    assert {(f["table"], f["column"]) for f in json.loads(output)["findings"]} == set(leaked)


CONTRACT = "20261205170000"


def test_an_older_database_is_sealed_by_a_rotation_then_contracted(
    cluster: Cluster, project: Project, tmp_path: Path
) -> None:
    """A database deployed before the contract migration, its tokens in the clear: the
    contract refuses it and changes nothing; `keys rotate` seals every token and fills every
    lookup; the contract then drops the plain-text columns, and every token opens."""
    older = Project(tmp_path / "older")
    older.migrations_dir.mkdir(parents=True)
    for path in sorted(project.migrations_dir.glob("*.sql")):
        if path.name < CONTRACT:
            shutil.copy(path, older.migrations_dir / path.name)
    name = f"payguard_pre_contract_{os.getpid()}"
    recreate_database(cluster.admin_url(), name)
    admin = cluster.admin_url(name)
    try:
        deploy(admin, older)
        user = uuid.uuid4()
        method, payout = uuid.uuid4(), uuid.uuid4()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "insert into auth.users (id, aud, role, email) "
                "values (%s, 'authenticated', 'authenticated', 'old@example.test')",
                (user,),
            )
            conn.execute(
                "insert into public.payment_methods (id, user_id, type, "
                "processor_payment_method_id, processor_customer_id) "
                "values (%s, %s, 'credit_card', 'pm_Old0000001x', 'cus_Old0000001x')",
                (method, user),
            )
            conn.execute(
                "insert into public.payout_methods (id, user_id, type, processor_account_id, "
                "processor_external_account_id, currency) "
                "values (%s, %s, 'bank_account', 'acct_Old000001x', 'ba_Old00000001x', 'USD')",
                (payout, user),
            )
            # An event stored as Stripe sent it, before the function passed lookups.
            conn.execute(
                "insert into public.webhook_events (id, type, payload) values "
                "('evt_Old0000001x', 'payout.failed', %s)",
                (
                    Jsonb(
                        {
                            "id": "evt_Old0000001x",
                            "account": "acct_Old000001x",
                            "data": {
                                "object": {
                                    "id": "po_Old0000001x",
                                    "failure_message": "closed:\nba_Old00000001x",
                                }
                            },
                        }
                    ),
                ),
            )
        with pytest.raises(PayguardError) as refused:
            deploy(admin, project)
        assert "4 rows still hold a processor token in plain text alone" in str(refused.value)
        assert "payguard keys rotate" in str(refused.value)
        with psycopg.connect(admin) as conn:
            assert conn.execute(
                "select count(*) from supabase_migrations.schema_migrations where version = %s",
                (CONTRACT,),
            ).fetchone() == (0,), "the contract is not recorded as applied"
            assert conn.execute(
                "select processor_payment_method_id from public.payment_methods"
            ).fetchone() == ("pm_Old0000001x",), "and nothing of it was"

        run = rotate(admin, OLD_KEYS, INDEX_KEYS)
        # 4 sealed with their lookups, 2 lookups alone, and the stored event's tokens
        assert run.sealed == 7
        assert run.by_column["webhook_events.payload"] == 1
        deploy(admin, project)

        with psycopg.connect(admin) as conn:
            plain = conn.execute(
                "select count(*) from information_schema.columns where table_schema = 'public' "
                "and column_name in ('processor_customer_id', 'processor_payment_method_id', "
                "'processor_account_id', 'processor_external_account_id')"
            ).fetchone()
            assert plain == (0,), "no plain-text column is left"
            rows = {
                "processor_customers": conn.execute(
                    "select user_id::text, processor_customer_id_sealed "
                    "from public.processor_customers"
                ).fetchone(),
                "payment_methods": conn.execute(
                    "select id::text, processor_payment_method_id_sealed "
                    "from public.payment_methods"
                ).fetchone(),
                "processor_accounts": conn.execute(
                    "select id::text, processor_account_id_sealed from public.processor_accounts"
                ).fetchone(),
                "payout_methods": conn.execute(
                    "select id::text, processor_external_account_id_sealed "
                    "from public.payout_methods"
                ).fetchone(),
            }
        opened = {
            table: decrypt(
                OLD_KEYS,
                row[1],
                table=table,
                column=next(c.plain for c in SEALED_COLUMNS if c.table == table),
                row_id=row[0],
            )
            for table, row in rows.items()
            if row is not None
        }
        assert opened == {
            "processor_customers": "cus_Old0000001x",
            "payment_methods": "pm_Old0000001x",
            "processor_accounts": "acct_Old000001x",
            "payout_methods": "ba_Old00000001x",
        }
        with psycopg.connect(admin) as conn:
            payload = conn.execute("select payload from public.webhook_events").fetchone()[0]  # type: ignore[index]
        assert payload["account"] == lookup(INDEX_KEYS, "acct_Old000001x")
        assert payload["data"]["object"]["failure_message"] == (
            f"closed:\n{lookup(INDEX_KEYS, 'ba_Old00000001x')}"
        )
        assert scan(admin) == [], "no token is left in the clear, the audit trail included"
    finally:
        drop_database(cluster.admin_url(), name)


INDEX_NEXT = new_entry("i-two")
BOTH_INDEX_KEYS = KeySet.parse(f"{INDEX_NEXT},{INDEX}")


def lookups_by_column(url: str) -> dict[str, dict[str, str]]:
    """Each token column's lookup by row key."""
    with psycopg.connect(url) as conn:
        return {
            c.name: dict(
                conn.execute(
                    f"select {c.key}::text, {c.lookup}::text from public.{c.table}"
                ).fetchall()
            )
            for c in TOKEN_COLUMNS
        }


def test_reindex_moves_every_lookup_to_the_new_index_key(url: str) -> None:
    """Every lookup, on its row and on the rows that refer to its token (a funding attempt's
    card and customer included), moves to the new index key; a token known by its lookup alone
    stays under the old one, which cannot be retired then; the old key must be given."""
    held = seed(url, 3)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select tests.create_project_with_milestones('rot-0', 'rot-1', array[10000])")
        payment = conn.execute("select id from public.milestone_payments").fetchone()[0]  # type: ignore[index]
        method, card = held["payment_methods.processor_payment_method_id"][0]
        customer = held["payment_methods.processor_customer_id"][0][1]
        conn.execute(
            "insert into public.funding_attempts (milestone_payment_id, attempt, "
            "payment_method_id, amount_minor, currency, idempotency_key, "
            "processor_payment_method_id_lookup, processor_customer_id_lookup) "
            "values (%s, 1, %s, 10000, 'USD', 'reindex-1', %s, %s)",
            (payment, method, lookup(INDEX_KEYS, card), lookup(INDEX_KEYS, customer)),
        )
        # An account account.updated reported, that no one has onboarded: known by its lookup.
        conn.execute(
            "insert into public.processor_accounts (processor_account_id_lookup) values (%s)",
            (lookup(INDEX_KEYS, "acct_Nobody0001x"),),
        )

    with pytest.raises(RotationError, match="give the old index key too"):
        reindex(url, OLD_KEYS, KeySet.parse(INDEX_NEXT))
    run = reindex(url, OLD_KEYS, BOTH_INDEX_KEYS, batch_size=2)
    assert run.target_kid == "i-two"
    assert run.left == {"processor_accounts.processor_account_id": 1}
    moved = lookups_by_column(url)
    for column in TOKEN_COLUMNS:
        for key, token in held[column.name]:
            assert moved[column.name][key] == lookup(BOTH_INDEX_KEYS, token), (column.name, key)
    attempt = moved["funding_attempts.processor_payment_method_id"]
    assert list(attempt.values()) == [lookup(BOTH_INDEX_KEYS, card)]
    assert list(moved["funding_attempts.processor_customer_id"].values()) == [
        lookup(BOTH_INDEX_KEYS, customer)
    ]
    # 3 customers, 6 cards (and their 6 references to a customer), 3 accounts (and 3
    # references), 3 bank accounts, and the attempt's 2.
    assert run.moved == 26
    assert reindex(url, OLD_KEYS, BOTH_INDEX_KEYS).moved == 0
    # Every envelope still opens for its row, and a rotation checks it against its new lookup.
    assert rotate(url, NEW_KEYS, BOTH_INDEX_KEYS).sealed == sum(
        len(held[c.name]) for c in SEALED_COLUMNS
    )

    retire = run_cli("retire", "--index", "i-one", "--db-url", url, "--json")
    output, _ = retire.communicate(timeout=30)
    assert retire.returncode == 1
    assert json.loads(output)["lookups_under_it"] == {"processor_accounts.processor_account_id": 1}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("delete from public.processor_accounts where user_id is null")
    assert run_cli("retire", "--index", "i-one", "--db-url", url).wait(timeout=30) == 0
