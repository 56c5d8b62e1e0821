"""Release throughput: funded->released transitions per second with concurrent clients,
with the audit trail on and off, against pgbench's TPC-B on the same server in the same run.

Each release is a full transition as an app client makes it through PostgREST: a
transaction on a pooled `authenticator` connection that sets the payer's role and claims,
then updates the payment; the triggers check it, post the ledger transfers (the payee's
share and the platform fee), write the notifications and alerts, and (audit on) one audit
row per changed row. Every payment has its own project, escrow account, homeowner and
contractor, as in real traffic, so what is measured is the transition's own cost and
whatever the design serialises.

The audit trail is switched off and on between rounds (off, on, off, on, ...), so that
both sides see the same tables as they grow. The sealer runs throughout, as in production,
and its lag is measured on the rows of the audited rounds: from the start of the
transaction that wrote a row to the end of the sealing that hashed it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg

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
    tables = conn.execute(
        "select tgrelid::regclass::text from pg_trigger where tgname = 'audit_trail'"
    ).fetchall()
    action = "enable" if enabled else "disable"
    with conn.transaction():
        for (table,) in tables:
            conn.execute(f"alter table {table} {action} trigger audit_trail")


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
        conn.execute(
            "insert into public.project_milestones (id, project_id, position, title, "
            "amount_minor, currency) "
            "select p.milestone, p.project, 1, 'Milestone', 50000, 'USD' from bench_parties as p"
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


def release_all(
    authenticator_url: str, work: list[tuple[uuid.UUID, uuid.UUID]], clients: int
) -> tuple[float, int]:
    """Release every payment, `clients` connections at once; returns (seconds, failures)."""
    shares = [work[i::clients] for i in range(clients)]
    start = threading.Barrier(clients + 1)
    failures = [0] * clients

    def client(index: int) -> None:
        with psycopg.connect(authenticator_url, autocommit=True) as conn:
            cursor = psycopg.ClientCursor(conn)
            start.wait()
            for payment, payer in shares[index]:
                settings = Request("authenticated", user_claims(payer, aal="aal2")).settings()
                flat = [part for pair in settings for part in pair]
                # One round trip per request, as a client-side-bound batch: the work on the
                # server is PostgREST's (begin, its settings, the statement, commit), and the
                # client's own overhead stays out of the measurement.
                request = (
                    "begin; select "
                    + ", ".join("set_config(%s, %s, true)" for _ in settings)
                    + "; update public.milestone_payments set status = 'released' "
                    "where id = %s; commit"
                )
                try:
                    cursor.execute(request, [*flat, payment])
                except psycopg.Error:
                    conn.execute("rollback")
                    failures[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sum(failures)


def pgbench_tps(
    host: str, port: int, user: str, database: str, clients: int, seconds: int, scale: int = 10
) -> float:
    """TPC-B transactions per second from pgbench at `scale` on `database` (re-initialised)."""
    pgbench = shutil.which("pgbench") or str(pg_bindir() / "pgbench")
    base = [pgbench, "-h", host, "-p", str(port), "-U", user]
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
    authenticator_url: str,
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
    seal_now(owner_url)
    done = threading.Event()
    sealer = ThreadPoolExecutor(1).submit(follow, owner_url, interval=0.05, until=done.is_set)
    # per side (audit on, off): releases, seconds, failures
    totals: dict[bool, list[float]] = {True: [0, 0.0, 0], False: [0, 0.0, 0]}
    audited: list[tuple[int, int]] = []
    rates: list[tuple[bool, float]] = []
    try:
        with connect(owner_url) as conn:
            for number in range(rounds):
                enabled = number % 2 == 1
                set_audit(conn, enabled)
                chunk = work[number::rounds]
                before = audit_head(conn)
                seconds, failures = release_all(authenticator_url, chunk, clients)
                if enabled:
                    audited.append((before, audit_head(conn)))
                rates.append((enabled, (len(chunk) - failures) / seconds))
                totals[enabled][0] += len(chunk) - failures
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
