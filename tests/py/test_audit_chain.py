"""The audit log's hash chain: sealed asynchronously, verified independently.

Each test gets its own database with a sealed log of real activity; the superuser then
tampers with it, triggers disabled, and `verify` must name the first bad seq.

The module runs in a cluster of its own: the sealer seals only what every transaction older
than its fence has ended on, and the oldest transaction running is the cluster's, whatever its
database, so another module's open transaction would hold a seal back."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.audit.chain import CANONICAL, Anchor, current_anchor, verify
from payguard.audit.sealer import follow, seal_now
from payguard.cli import app
from payguard.cluster import APP_ROLE, Cluster
from payguard.project import Project
from payguard.template import clone_template, drop_clone
from payguard.testing.fixtures import own_cluster

# Text that needs escaping in JSON: quotes, backslashes, control characters, non-ASCII.
AWKWARD_TEXT = 'say "hi" \\ a\\b\ttab\nline \x01 é ✓ 😀 </p>'


@pytest.fixture(scope="module")
def cluster(project: Project) -> Iterator[Cluster]:
    """This module's own cluster (it overrides the project's for the module's fixtures)."""
    with own_cluster(project, "audit-chain") as made:
        yield made


@pytest.fixture(scope="module")
def sealed_log(cluster: Cluster) -> Iterator[str]:
    """The name of a database whose audit log holds 40 users' sign-ups and profile edits, and
    a gap left by a rolled-back transaction, all sealed: what each test's `log` copies."""
    name, _ = clone_template(cluster, "audit_log")
    url = cluster.socket_url(APP_ROLE, name)
    with psycopg.connect(url, autocommit=True) as conn:
        for n in range(40):
            user = conn.execute("select tests.create_supabase_user(%s)", (f"u{n}",)).fetchone()
            assert user is not None
            conn.execute(
                "update public.users set full_name = %s where id = %s", (f"U {n}", user[0])
            )
            if n == 20:
                conn.execute("begin")
                conn.execute("select tests.create_supabase_user('gone')")
                conn.execute("rollback")
    seal_now(url)
    yield name
    drop_clone(cluster, name)


@pytest.fixture
def log(cluster: Cluster, sealed_log: str) -> Iterator[dict[str, str]]:
    """A copy of the sealed log's database, for one test."""
    name, _ = clone_template(cluster, "audit", template=sealed_log)
    yield {"owner": cluster.socket_url(APP_ROLE, name), "admin": cluster.admin_url(name)}
    drop_clone(cluster, name)


def tamper(url: str, *statements: str) -> None:
    """Run statements as the superuser with every trigger off (session_replication_role)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("set local session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def seqs(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [
            r[0] for r in conn.execute("select seq from public.payment_audit_logs order by seq")
        ]


def skipped(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select generate_series(lower(r), upper(r) - 1) from private.audit_seals, "
            "unnest(skipped_seqs) as r order by 1"
        )
        return [r[0] for r in rows]


def test_an_untouched_log_verifies(log):
    present = seqs(log["owner"])
    verdict = verify(log["owner"])
    assert verdict.ok, verdict
    assert verdict.checked == len(present) >= 80
    assert verdict.sealed_through == present[-1]
    # the rolled-back sign-up left seqs that hold no row, recorded as skipped when sealed
    assert skipped(log["owner"]), "expected a gap from the rolled-back transaction"


def test_rows_whose_text_needs_escaping_verify(log):
    """The sealer writes each row's canonical text itself; verify builds it independently.
    Quotes, backslashes, control characters and non-ASCII text in every kind of column must
    come out byte for byte the same."""
    awkward = AWKWARD_TEXT
    with psycopg.connect(log["owner"], autocommit=True) as conn:
        conn.execute(
            "insert into public.payment_audit_logs (operation, entity_type, entity_id, "
            "user_role, ip_address, user_agent, success, error_message, metadata, new_values) "
            "values ('refuse', 'users', %s, %s, %s, %s, false, %s, %s, %s)",
            (
                awkward,
                awkward,
                awkward,
                awkward,
                awkward,
                psycopg.types.json.Jsonb({"note": awkward}),
                psycopg.types.json.Jsonb({awkward: [awkward, 1.50, None, True]}),
            ),
        )
        user = conn.execute("select id from public.users limit 1").fetchone()
        assert user is not None
        # A captured change (a profile's name is personal data, recorded only as a
        # fingerprint: a project's description is recorded as written).
        conn.execute(
            "insert into public.projects (owner_id, title, description) values (%s, %s, %s)",
            (user[0], "Awkward", awkward),
        )
    seal_now(log["owner"])
    with psycopg.connect(log["owner"]) as conn:
        row = conn.execute(
            "select count(*) from public.payment_audit_logs "
            "where user_agent = %s or new_values ->> 'description' = %s",
            (awkward, awkward),
        ).fetchone()
    assert row is not None
    assert row[0] == 2
    verdict = verify(log["owner"])
    assert verdict.ok, verdict
    assert verdict.sealed_through == seqs(log["owner"])[-1]


def test_verify_serializes_rows_as_the_canonical_definition_does(log):
    """verify writes the canonical text out itself; it must be, byte for byte, what
    private.audit_row_canonical (jsonb_build_array(...)::text) gives: for every row of the
    log, for text that needs escaping, and for a row whose nullable columns are all null."""
    awkward = AWKWARD_TEXT
    with psycopg.connect(log["owner"], autocommit=True) as conn:
        conn.execute(
            "insert into public.payment_audit_logs (operation, entity_type, entity_id, "
            "user_role, ip_address, user_agent, success, error_message, metadata, old_values, "
            "new_values) values ('refuse', %s, %s, %s, %s, %s, false, %s, %s, %s, %s)",
            (
                awkward,
                awkward,
                awkward,
                awkward,
                awkward,
                awkward,
                psycopg.types.json.Jsonb({"note": awkward, "n": [1.50, -0.0, 1e-7, 12345678901]}),
                psycopg.types.json.Jsonb({awkward: {"nested": [awkward, None, False]}}),
                psycopg.types.json.Jsonb([awkward, 2.5, None]),
            ),
        )
        conn.execute(
            "insert into public.payment_audit_logs (operation, entity_type, entity_id, "
            "user_role, success) values ('refuse', 'users', 'x', 'anon', true)"
        )
        rows = conn.execute(
            "select l.seq, private.audit_row_canonical(l), "
            f"{CANONICAL}, l.user_agent = %s from public.payment_audit_logs as l order by l.seq",
            (awkward,),
        ).fetchall()
    assert len(rows) >= 82
    differing = [seq for seq, defined, written, _ in rows if defined != written]
    assert not differing, f"verify serializes these rows differently: {differing[:5]}"
    assert sum(1 for *_, is_awkward in rows if is_awkward) == 1
    assert rows[-1][2].endswith(", null, null, null, true, null, null]"), rows[-1][2]


def test_an_edited_value_is_found(log):
    target = seqs(log["owner"])[30]
    tamper(
        log["admin"],
        f'update public.payment_audit_logs set new_values = new_values || \'{{"full_name": "X"}}\''
        f" where seq = {target}",
    )
    verdict = verify(log["owner"])
    assert (verdict.first_bad, verdict.reason.split(":")[0]) == (target, "contents changed")


def test_an_edited_actor_is_found(log):
    target = seqs(log["owner"])[5]
    tamper(
        log["admin"],
        f"update public.payment_audit_logs set user_role = 'auditor' where seq = {target}",
    )
    assert verify(log["owner"]).first_bad == target


def test_a_deleted_row_is_found(log):
    target = seqs(log["owner"])[12]
    tamper(log["admin"], f"delete from public.payment_audit_logs where seq = {target}")
    verdict = verify(log["owner"])
    assert verdict.first_bad == target, verdict
    assert verdict.reason.startswith("row missing")


def test_a_forged_row_in_a_skipped_seq_is_found(log):
    gap = skipped(log["owner"])[0]
    tamper(
        log["admin"],
        "insert into public.payment_audit_logs (seq, operation, entity_type, entity_id, "
        "user_role, success, prev_hash, row_hash) "
        f"select {gap}, 'UPDATE', 'withdrawals', gen_random_uuid()::text, 'admin', true, "
        "prev_hash, row_hash from public.payment_audit_logs "
        f"where seq = (select max(seq) from public.payment_audit_logs where seq < {gap})",
    )
    verdict = verify(log["owner"])
    assert verdict.first_bad == gap, verdict
    assert verdict.reason.startswith("inserted row")


def test_a_forged_row_after_the_head_is_found(log):
    last = seqs(log["owner"])[-1]
    tamper(
        log["admin"],
        "insert into public.payment_audit_logs (seq, operation, entity_type, entity_id, "
        "user_role, success, prev_hash, row_hash) "
        f"select {last + 1}, 'DELETE', 'withdrawals', gen_random_uuid()::text, 'admin', true, "
        f"row_hash, sha256(row_hash) from public.payment_audit_logs where seq = {last}",
    )
    verdict = verify(log["owner"])
    assert verdict.first_bad == last + 1, verdict


def test_two_swapped_rows_are_found(log):
    present = seqs(log["owner"])
    a, b = present[10], present[25]
    tamper(
        log["admin"],
        f"update public.payment_audit_logs set seq = -1 where seq = {a}",
        f"update public.payment_audit_logs set seq = {a} where seq = {b}",
        f"update public.payment_audit_logs set seq = {b} where seq = -1",
    )
    verdict = verify(log["owner"])
    assert verdict.first_bad == a, verdict


def test_a_truncated_tail_is_found(log):
    present = seqs(log["owner"])
    cut = present[-7]
    tamper(log["admin"], f"delete from public.payment_audit_logs where seq >= {cut}")
    verdict = verify(log["owner"])
    assert verdict.first_bad == cut, verdict
    assert verdict.reason.startswith("rows missing from here on")


def test_a_rewritten_chain_with_rewritten_seals_passes_only_without_its_anchor(log):
    """Who can rewrite the log, the seals and every hash after an edit defeats the chain
    alone; an anchor kept outside the database does not move with them."""
    found = current_anchor(log["owner"])
    assert found is not None
    anchor, _ = found
    target = seqs(log["owner"])[3]
    tamper(
        log["admin"],
        f"update public.payment_audit_logs set user_role = 'auditor' where seq = {target}",
        f"""do $$
        declare
          prev bytea;
          r public.payment_audit_logs;
        begin
          select row_hash into prev from public.payment_audit_logs
          where seq = (select max(seq) from public.payment_audit_logs where seq < {target});
          for r in select * from public.payment_audit_logs where seq >= {target} order by seq loop
            update public.payment_audit_logs set prev_hash = prev,
              row_hash = sha256(prev || convert_to(private.audit_row_canonical(r), 'UTF8'))
            where seq = r.seq returning row_hash into prev;
          end loop;
          create temp table new_head as select prev as head_hash;
        end
        $$""",
        "create temp table old_seals as select * from private.audit_seals",
        "delete from private.audit_seals",
        "insert into private.audit_seals select through_seq, "
        "case when through_seq = (select max(through_seq) from old_seals) "
        "then (select head_hash from new_head) else head_hash end, sealed_rows, skipped_seqs, "
        "sealed_at from old_seals",
    )
    assert verify(log["owner"]).ok
    verdict = verify(log["owner"], anchor=anchor)
    assert verdict.first_bad == anchor.seq, verdict


def test_the_anchor_of_an_older_head_still_holds(log):
    found = current_anchor(log["owner"])
    assert found is not None
    anchor, _ = found
    with psycopg.connect(log["owner"], autocommit=True) as conn:
        for n in range(5):
            conn.execute("select tests.create_supabase_user(%s)", (f"later{n}",))
    seal_now(log["owner"])
    verdict = verify(log["owner"], anchor=anchor)
    assert verdict.ok, verdict
    assert verdict.anchor_checked, verdict
    wrong = Anchor(anchor.seq, bytes(32))
    assert verify(log["owner"], anchor=wrong).first_bad == anchor.seq


def test_verify_from_a_seq(log):
    present = seqs(log["owner"])
    target = present[5]
    tamper(
        log["admin"], f"update public.payment_audit_logs set user_agent = 'x' where seq = {target}"
    )
    assert verify(log["owner"]).first_bad == target
    later = verify(log["owner"], from_seq=present[20])
    assert later.ok, later
    assert later.checked == len(present) - 20, later


def test_unsealed_rows_are_reported_not_failed(log):
    with psycopg.connect(log["owner"], autocommit=True) as conn:
        conn.execute("select tests.create_supabase_user('fresh')")
    verdict = verify(log["owner"])
    assert verdict.ok, verdict
    assert verdict.unsealed == 1, verdict


def test_the_cli_verifies_anchors_and_reports(log):
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--db-url", log["owner"]])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("verified: "), ok.output
    printed = runner.invoke(app, ["audit", "anchor", "--db-url", log["owner"]])
    assert printed.exit_code == 0, printed.output
    anchor = printed.output.split()[0]
    assert Anchor.parse(anchor).seq == seqs(log["owner"])[-1]
    anchored = runner.invoke(app, ["audit", "verify", "--db-url", log["owner"], "--anchor", anchor])
    assert anchored.exit_code == 0, anchored.output
    assert "extends anchor" in anchored.output, anchored.output
    target = seqs(log["owner"])[8]
    tamper(log["admin"], f"delete from public.payment_audit_logs where seq = {target}")
    bad = runner.invoke(app, ["audit", "verify", "--db-url", log["owner"]])
    assert bad.exit_code == 1
    assert f"first bad seq {target}: row missing" in bad.output
    malformed = runner.invoke(app, ["audit", "verify", "--db-url", log["owner"], "--anchor", "x"])
    assert malformed.exit_code == 2
    assert "an anchor is SEQ:HASH" in malformed.output


def test_sixteen_concurrent_writers_leave_a_chain_that_verifies(log):
    """16 connections write (some transactions roll back) while a sealer follows them."""
    done = threading.Event()
    sealer = ThreadPoolExecutor(1).submit(follow, log["owner"], interval=0.02, until=done.is_set)
    before = len(seqs(log["owner"]))

    def writer(worker: int) -> int:
        committed = 0
        rng = random.Random(worker)
        with psycopg.connect(log["owner"], autocommit=True) as conn:
            for n in range(25):
                try:
                    with conn.transaction():
                        conn.execute(
                            "select tests.create_supabase_user(%s)",
                            (f"w{worker}-{n}-{uuid.uuid4().hex[:6]}",),
                        )
                        if rng.random() < 0.2:
                            raise RuntimeError("roll back")
                    committed += 1
                except RuntimeError:
                    pass
        return committed

    with ThreadPoolExecutor(16) as pool:
        committed = sum(pool.map(writer, range(16)))
    done.set()
    sealer.result(timeout=60)
    seal_now(log["owner"])
    verdict = verify(log["owner"])
    assert verdict.ok, verdict
    # each committed sign-up wrote its public.users row
    assert verdict.checked == len(seqs(log["owner"])) >= before + committed
    assert verdict.unsealed == 0
    assert skipped(log["owner"])


def _log_tuples_read(conn: psycopg.Connection) -> int:
    """Tuples read so far from payment_audit_logs: by sequential scans and from its indexes."""
    conn.execute("select pg_stat_force_next_flush()")
    row = conn.execute(
        "select coalesce(t.seq_tup_read, 0) + coalesce(sum(i.idx_tup_read), 0) "
        "from pg_stat_user_tables as t "
        "left join pg_stat_user_indexes as i on i.relid = t.relid "
        "where t.relid = 'public.payment_audit_logs'::regclass group by t.seq_tup_read"
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_sealing_reads_only_the_rows_it_seals(log):
    """A seal's cost follows its batch, not the log's length: sealing 2,000 rows after 30,000
    sealed ones reads about the batch, not the whole log."""
    append = (
        "insert into public.payment_audit_logs (operation, entity_type, entity_id, user_role, "
        "success) select 'INSERT', 'users', g::text, 'postgres', true "
        "from generate_series(1, %s) as g"
    )
    # The 30,000 rows are written as the stamp trigger writes these ones (a fresh id, the
    # next seq, the time, no hashes; nothing in them holds card data, so nothing is removed),
    # the trigger off: stamped row by row they would take most of the test's time.
    with psycopg.connect(log["admin"], autocommit=True) as conn, conn.transaction():
        conn.execute("set local session_replication_role = replica")
        conn.execute("select pg_current_xact_id()")  # as the stamp: an id before any seq
        conn.execute(
            "insert into public.payment_audit_logs (id, seq, timestamp, operation, "
            "entity_type, entity_id, user_role, success) select gen_random_uuid(), "
            "nextval('private.audit_log_seq'), now(), 'INSERT', 'users', g::text, "
            "'postgres', true from generate_series(1, 30000) as g"
        )
    seal_now(log["owner"])
    with psycopg.connect(log["owner"], autocommit=True) as conn:
        conn.execute(append, (2_000,))
        conn.execute("select private.seal_audit_log()")  # the fence over the new rows
        before = _log_tuples_read(conn)
        (sealed,) = conn.execute("select private.seal_audit_log()").fetchone() or (0,)
        read = _log_tuples_read(conn) - before
    assert sealed == 2_000
    assert read <= 3 * sealed, f"sealing {sealed} rows read {read} log tuples"
    assert verify(log["owner"]).ok
