"""Release throughput: funded->released transitions per second with concurrent clients,
against pgbench's TPC-B on the same server in the same run.

Each release is a full transition as an app client makes it through PostgREST: a
transaction on a pooled `authenticator` connection that sets the payer's role and claims,
then updates the payment; the triggers check it, post the ledger transfers (the payee's
share and the platform fee) and write the notifications and alerts. Every payment has its
own project, escrow account, homeowner and contractor, as in real traffic, so what is
measured is the transition's own cost and whatever the design serialises.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from payguard.cluster import pg_bindir
from payguard.db import Connection, connect
from payguard.errors import PayguardError
from payguard.testing.request import Request, user_claims


@dataclass(frozen=True)
class Throughput:
    clients: int
    releases: int
    seconds: float
    failures: int
    pgbench_tps: float

    @property
    def tps(self) -> float:
        return self.releases / self.seconds

    @property
    def ratio(self) -> float:
        return self.tps / self.pgbench_tps

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "releases": self.releases,
            "seconds": round(self.seconds, 2),
            "failures": self.failures,
            "releases_per_second": round(self.tps, 1),
            "pgbench_tpcb_tps": round(self.pgbench_tps, 1),
            "ratio": round(self.ratio, 3),
        }


def prepare(conn: Connection, payments: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """`payments` funded milestone payments, each in a project of its own; returns
    (payment, payer) pairs."""
    with conn.transaction():
        conn.execute("update private.settings set value = '0' where key = 'escrow_hold_seconds'")
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
            start.wait()
            for payment, payer in shares[index]:
                settings = Request("authenticated", user_claims(payer, aal="aal2")).settings()
                flat = [part for pair in settings for part in pair]
                set_all = "select " + ", ".join("set_config(%s, %s, true)" for _ in settings)
                try:
                    with conn.transaction():
                        conn.execute(set_all, flat)
                        conn.execute(
                            "update public.milestone_payments set status = 'released' "
                            "where id = %s",
                            (payment,),
                        )
                except psycopg.Error:
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
) -> Throughput:
    with connect(owner_url) as conn:
        work = prepare(conn, payments)
    seconds, failures = release_all(authenticator_url, work, clients)
    host, port, user, database = pgbench_target
    tps = pgbench_tps(host, port, user, database, clients, pgbench_seconds, pgbench_scale)
    return Throughput(
        clients=clients,
        releases=len(work) - failures,
        seconds=seconds,
        failures=failures,
        pgbench_tps=tps,
    )
