"""Release throughput: funded->released transitions per second with concurrent clients,
with the audit trail on and off, against pgbench's TPC-B on the same server in the same run.

Each release is a full transition as an app client makes it through PostgREST: a
transaction on an `authenticator` connection that sets the payer's role and claims (the
same settings PostgREST sets), then updates the payment. pgbench itself drives the
releases, from a script, so that both figures come from the same C client and the client's
own overhead stays out of the comparison. In the transaction, the triggers check the
release, post the ledger transfers (the payee's share and the platform fee), write the
notifications and alerts, and (audit on) one audit row per changed row. Every payment has
its own project, escrow account, homeowner and contractor, as in real traffic, so what is
measured is the transition's own cost and whatever the design serialises.

The audit trail is switched off and on between rounds (off, on, off, on, ...), so that
both sides see the same tables as they grow. The sealer runs throughout, as in production,
and its lag is measured on the rows of the audited rounds: from the start of the
transaction that wrote a row to the end of the sealing that hashed it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from payguard.audit.sealer import follow, seal_now
from payguard.cluster import pg_bindir
from payguard.db import Connection, connect
from payguard.errors import PayguardError
from payguard.testing.request import Request, user_claims


@dataclass(frozen=True)
class SealLag:
    rows: int
    median_s: float
    p99_s: float
    max_s: float


@dataclass(frozen=True)
class Throughput:
    clients: int
    releases: int
    seconds: float
    failures: int
    pgbench_tps: float
    unaudited_releases: int
    unaudited_seconds: float
    audit_rows_per_release: float
    lag: SealLag
    rounds: list[tuple[bool, float]]

    @property
    def tps(self) -> float:
        return self.releases / self.seconds

    @property
    def ratio(self) -> float:
        return self.tps / self.pgbench_tps

    @property
    def unaudited_tps(self) -> float:
        return self.unaudited_releases / self.unaudited_seconds

    @property
    def audit_cost(self) -> float:
        """The share of throughput the audit trail takes: 1 - audited / unaudited."""
        return 1 - self.tps / self.unaudited_tps

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "releases": self.releases,
            "seconds": round(self.seconds, 2),
            "failures": self.failures,
            "releases_per_second": round(self.tps, 1),
            "pgbench_tpcb_tps": round(self.pgbench_tps, 1),
            "ratio": round(self.ratio, 3),
            "unaudited_releases_per_second": round(self.unaudited_tps, 1),
            "audit_cost": round(self.audit_cost, 3),
            "audit_rows_per_release": round(self.audit_rows_per_release, 1),
            "rounds": [
                {"audit": audit, "releases_per_second": round(rate, 1)}
                for audit, rate in self.rounds
            ],
            "seal_lag_seconds": {
                "rows": self.lag.rows,
                "median": round(self.lag.median_s, 3),
                "p99": round(self.lag.p99_s, 3),
                "max": round(self.lag.max_s, 3),
            },
        }


def set_audit(conn: Connection, enabled: bool) -> None:
    """Switch the audit triggers of every audited table on or off (the bench's own database)."""
    triggers = conn.execute(
        "select tgrelid::regclass::text, quote_ident(tgname) from pg_trigger "
        "where tgfoid in ('private.capture_audit_row()'::regprocedure, "
        "'private.capture_audit_inserts()'::regprocedure, "
        "'private.capture_audit_updates()'::regprocedure)"
    ).fetchall()
    action = "enable" if enabled else "disable"
    with conn.transaction():
        for table, trigger in triggers:
            conn.execute(f"alter table {table} {action} trigger {trigger}")


def audit_head(conn: Connection) -> int:
    row = conn.execute("select coalesce(max(seq), 0) from public.payment_audit_logs").fetchone()
    return int(row[0]) if row else 0


def seal_lag(conn: Connection, ranges: list[tuple[int, int]]) -> SealLag:
    """How long the rows in the seq ranges (low, high] waited to be sealed."""
    row = conn.execute(
        "select count(*), percentile_cont(0.5) within group (order by w), "
        "percentile_cont(0.99) within group (order by w), max(w) from ("
        "  select extract(epoch from s.sealed_at - l.timestamp)::float8 as w"
        "  from public.payment_audit_logs as l"
        "  cross join lateral (select a.sealed_at from private.audit_seals as a"
        "    where a.through_seq >= l.seq order by a.through_seq limit 1) as s"
        "  where " + " or ".join("(l.seq > %s and l.seq <= %s)" for _ in ranges) + ") as lags",
        [bound for pair in ranges for bound in pair],
    ).fetchone()
    assert row is not None
    return SealLag(int(row[0]), float(row[1] or 0), float(row[2] or 0), float(row[3] or 0))


def prepare(conn: Connection, payments: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """`payments` funded milestone payments, each in a project of its own; returns
    (payment, payer) pairs."""
    with conn.transaction():
        conn.execute("update private.settings set value = '0' where key = 'escrow_hold_seconds'")
        # Business hours all day: otherwise every release made at night raises an after-hours
        # alert, and the figures would depend on the time of day the benchmark runs.
        conn.execute(
            'update private.settings set value = \'{"time_zone": "UTC", "from": 0, '
            "\"to\": 24}' where key = 'business_hours'"
        )
        conn.execute(
            "create temporary table bench_parties as select g as n, gen_random_uuid() as owner, "
            "gen_random_uuid() as contractor, gen_random_uuid() as project, "
            "gen_random_uuid() as milestone, gen_random_uuid() as payment "
            "from generate_series(1, %s) as g",
            (payments,),
        )
        conn.execute(
            "insert into auth.users (id, aud, role, email, raw_user_meta_data) "
            "select p.owner, 'authenticated', 'authenticated', 'o' || p.n || '@example.test', "
            "'{}'::jsonb from bench_parties as p union all "
            "select p.contractor, 'authenticated', 'authenticated', 'c' || p.n || '@example.test', "
            '\'{"role": "contractor"}\' from bench_parties as p'
        )
        conn.execute(
            "insert into public.projects (id, owner_id, contractor_id, title) "
            "select p.project, p.owner, p.contractor, 'Project ' || p.n from bench_parties as p"
        )
        conn.execute(
            "insert into public.escrow_accounts (user_id, project_id, currency) "
            "select p.owner, p.project, 'USD' from bench_parties as p"
        )
        # Each milestone submitted for review, as its contractor's submission leaves it (an
        # insert as the owner: the review trigger checks updates), so that it may be released.
        conn.execute(
            "insert into public.project_milestones (id, project_id, position, title, "
            "amount_minor, currency, status, submitted_at, review_ends_at) "
            "select p.milestone, p.project, 1, 'Milestone', 50000, 'USD', 'completed', now(), "
            "now() + interval '7 days' from bench_parties as p"
        )
        conn.execute(
            "insert into public.milestone_payments (id, milestone_id, payer_id) "
            "select p.payment, p.milestone, p.owner from bench_parties as p"
        )
        # Funding as the owner: the actor checks are skipped, the postings are not.
        conn.execute(
            "alter table public.milestone_payments "
            "disable trigger check_milestone_payment_transition"
        )
        conn.execute(
            "update public.milestone_payments as mp set status = 'funded', funded_at = now(), "
            "processor_payment_intent_id = 'pi_Bench' || p.n, "
            "escrow_account_id = e.id "
            "from public.project_milestones as m "
            "join public.escrow_accounts as e on e.project_id = m.project_id "
            "join bench_parties as p on p.milestone = m.id where m.id = mp.milestone_id"
        )
        conn.execute(
            "alter table public.milestone_payments "
            "enable trigger check_milestone_payment_transition"
        )
        rows = conn.execute("select payment, owner from bench_parties order by n").fetchall()
    conn.execute("vacuum analyze")
    return [(row[0], row[1]) for row in rows]


def stage_requests(conn: Connection, work: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Stage each release's request for pgbench: the payment and its payer's JWT claims, in
    the order they are to be taken (`bench.next_release`)."""
    with conn.transaction():
        conn.execute("drop schema if exists bench cascade")
        conn.execute("create schema bench")
        conn.execute("create sequence bench.next_release")
        conn.execute(
            "create table bench.requests (n bigint primary key, payment uuid, claims text)"
        )
        # PostgREST's login role reads the staged request, then takes the payer's role.
        conn.execute("grant usage on schema bench to authenticator")
        conn.execute("grant select on bench.requests to authenticator")
        conn.execute("grant usage on sequence bench.next_release to authenticator")
        with conn.cursor().copy("copy bench.requests (n, payment, claims) from stdin") as copy:
            for n, (payment, payer) in enumerate(work, start=1):
                claims = dict(Request("authenticated", user_claims(payer, aal="aal2")).settings())
                copy.write_row((n, payment, claims["request.jwt.claims"]))


def release_script() -> str:
    """One release as PostgREST makes it, as a pgbench script: begin; the request's settings
    (the payer's claims from the staged request); the PATCH's UPDATE; commit."""
    settings = Request(
        "authenticated", {}, method="PATCH", path="/rest/v1/milestone_payments"
    ).settings()
    calls = [
        "set_config('request.jwt.claims', r.claims, true)"
        if name == "request.jwt.claims"
        else f"set_config('{name}', '{value}', true)"
        for name, value in settings
    ]
    # The payment's id as a quoted literal, as PostgREST's filter puts it (id=eq.…): a value
    # computed in the statement instead would not be leakproof, so row-level security would
    # have to filter every row before the primary key could be used.
    return (
        "BEGIN;\n"
        f"SELECT {', '.join(calls)}, quote_literal(r.payment) AS payment FROM bench.requests AS r "
        "WHERE r.n = (SELECT nextval('bench.next_release')) \\gset\n"
        "UPDATE public.milestone_payments SET status = 'released' WHERE id = :payment;\n"
        "END;\n"
    )


def release_round(
    owner_url: str, target: tuple[str, int, str, str], releases: int, clients: int
) -> tuple[float, int]:
    """Release the next `releases` staged payments with pgbench, `clients` at once, logged in
    as `target`'s user (PostgREST's authenticator); returns (seconds, releases that failed)."""
    host, port, user, database = target
    per_client = releases // clients
    with connect(owner_url) as conn:
        before = conn.execute(
            "select count(*) from public.milestone_payments where status = 'released'"
        ).fetchone()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(release_script())
    os.chmod(script.name, 0o644)
    try:
        run = subprocess.run(
            [
                _pgbench(),
                "-h",
                host,
                "-p",
                str(port),
                "-U",
                user,
                "-n",
                "-c",
                str(clients),
                "-j",
                str(min(clients, 4)),
                "-t",
                str(per_client),
                "-f",
                script.name,
                database,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(script.name)
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", run.stdout)
    if found is None:
        raise PayguardError(f"pgbench (releases) failed: {(run.stderr or run.stdout).strip()}")
    with connect(owner_url) as conn:
        after = conn.execute(
            "select count(*) from public.milestone_payments where status = 'released'"
        ).fetchone()
    released = int(after[0] if after else 0) - int(before[0] if before else 0)
    attempted = per_client * clients
    return attempted / float(found.group(1)), attempted - released


def _pgbench() -> str:
    return shutil.which("pgbench") or str(pg_bindir() / "pgbench")


def pgbench_tps(
    host: str, port: int, user: str, database: str, clients: int, seconds: int, scale: int = 10
) -> float:
    """TPC-B transactions per second from pgbench at `scale` on `database` (re-initialised)."""
    base = [_pgbench(), "-h", host, "-p", str(port), "-U", user]
    init = subprocess.run(
        [*base, "-i", "-s", str(scale), "-q", database], capture_output=True, text=True, check=False
    )
    if init.returncode != 0:
        raise PayguardError(f"pgbench -i failed: {init.stderr.strip().splitlines()[-1]}")
    run = subprocess.run(
        [*base, "-c", str(clients), "-j", str(min(clients, 4)), "-T", str(seconds), database],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"tps = ([0-9.]+)", run.stdout)
    if run.returncode != 0 or found is None:
        raise PayguardError(f"pgbench failed: {(run.stderr or run.stdout).strip()}")
    return float(found.group(1))


def run(
    owner_url: str,
    release_target: tuple[str, int, str, str],
    *,
    pgbench_target: tuple[str, int, str, str],
    payments: int,
    clients: int,
    pgbench_seconds: int,
    pgbench_scale: int = 10,
    rounds: int = 6,
) -> Throughput:
    with connect(owner_url) as conn:
        work = prepare(conn, payments)
        stage_requests(conn, work)
    seal_now(owner_url)
    done = threading.Event()
    sealer = ThreadPoolExecutor(1).submit(follow, owner_url, interval=0.25, until=done.is_set)
    # per side (audit on, off): releases, seconds, failures
    totals: dict[bool, list[float]] = {True: [0, 0.0, 0], False: [0, 0.0, 0]}
    audited: list[tuple[int, int]] = []
    rates: list[tuple[bool, float]] = []
    try:
        with connect(owner_url) as conn:
            for number in range(rounds):
                enabled = number % 2 == 1
                set_audit(conn, enabled)
                chunk = (len(work) // rounds) // clients * clients
                before = audit_head(conn)
                seconds, failures = release_round(owner_url, release_target, chunk, clients)
                if enabled:
                    audited.append((before, audit_head(conn)))
                rates.append((enabled, (chunk - failures) / seconds))
                totals[enabled][0] += chunk - failures
                totals[enabled][1] += seconds
                totals[enabled][2] += failures
            set_audit(conn, True)
    finally:
        done.set()
        sealer.result(timeout=120)
    seal_now(owner_url)
    with connect(owner_url) as conn:
        lag = seal_lag(conn, audited)
    host, port, user, database = pgbench_target
    tps = pgbench_tps(host, port, user, database, clients, pgbench_seconds, pgbench_scale)
    audited_releases, audited_seconds, audited_failures = totals[True]
    return Throughput(
        clients=clients,
        releases=int(audited_releases),
        seconds=float(audited_seconds),
        failures=int(audited_failures) + int(totals[False][2]),
        pgbench_tps=tps,
        unaudited_releases=int(totals[False][0]),
        unaudited_seconds=float(totals[False][1]),
        audit_rows_per_release=lag.rows / max(1, int(audited_releases)),
        lag=lag,
        rounds=rates,
    )
