"""The cost of row-level security, measured against the owner's own query in the same run.

Workload (on a database of its own, deployed afresh):
- payment_transactions: `rows` rows spread over `users` users. A user lists their own rows as
  PostgREST would: one transaction, role and claims set with set_config, then `select *`
  with no filter (RLS adds it). The baseline is the same listing by the table owner, who
  bypasses RLS, with an explicit `where user_id = …`.
- milestone_payments: a payment per milestone, between homeowners and contractors; a user
  lists the payments where they are payer or payee, against the owner's explicit
  `where payer_id = … or payee_id = …`.

The two are interleaved, sample by sample, so that the machine's noise hits both alike; the
figure is the ratio of the medians. Only the listing statement is timed; the settings that
PostgREST sends before it are timed apart.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

from payguard.db import Connection, connect
from payguard.testing.request import Request, user_claims


@dataclass(frozen=True)
class Comparison:
    name: str
    samples: int
    rows_per_listing: float
    rls_median_ms: float
    owner_median_ms: float
    settings_median_ms: float

    @property
    def ratio(self) -> float:
        return self.rls_median_ms / self.owner_median_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "samples": self.samples,
            "rows_per_listing": round(self.rows_per_listing, 1),
            "rls_median_ms": round(self.rls_median_ms, 3),
            "owner_median_ms": round(self.owner_median_ms, 3),
            "settings_median_ms": round(self.settings_median_ms, 3),
            "ratio": round(self.ratio, 3),
        }


def load(conn: Connection, *, users: int, rows: int, payments: int, seed: int) -> None:
    """Fill the database: users, transactions, projects, milestones and payments.

    The row triggers (timestamps, card-data guard, derivations) are disabled for the bulk
    load, which writes what they would have written, and enabled again before measuring.
    """
    conn.execute("select setseed(%s)", (seed / 2**31,))
    with conn.transaction():
        conn.execute(
            "insert into auth.users (id, aud, role, email) "
            "select gen_random_uuid(), 'authenticated', 'authenticated', "
            "'bench' || n || '@example.test' from generate_series(1, %s) as n",
            (users,),
        )
        conn.execute(
            "create temporary table bench_users as select id, "
            "row_number() over (order by id) as n from public.users"
        )
        conn.execute("create index on bench_users (n)")
        conn.execute("alter table public.payment_transactions disable trigger user")
        conn.execute(
            "insert into public.payment_transactions "
            "(user_id, type, status, amount_minor, currency, created_at, updated_at) "
            "select u.id, 'charge', 'succeeded', 100 + (random() * 100000)::bigint, 'USD', "
            "now(), now() from generate_series(1, %s) as g "
            "join bench_users as u on u.n = 1 + (g %% %s)",
            (rows, users),
        )
        conn.execute("alter table public.payment_transactions enable trigger user")
        half = users // 2
        for table in ("projects", "project_milestones", "milestone_payments"):
            conn.execute(f"alter table public.{table} disable trigger user")
        conn.execute(
            "insert into public.projects (id, owner_id, contractor_id, title, status, "
            "created_at, updated_at) "
            "select gen_random_uuid(), o.id, c.id, 'Project ' || g, 'in_progress', now(), now() "
            "from generate_series(1, %s) as g "
            "join bench_users as o on o.n = 1 + (g %% %s) "
            "join bench_users as c on c.n = %s + 1 + (g %% %s)",
            (payments, half, half, users - half),
        )
        conn.execute(
            "insert into public.project_milestones (project_id, position, title, amount_minor, "
            "currency, created_at, updated_at) "
            "select p.id, 1, 'Milestone', 1000 + (random() * 100000)::bigint, 'USD', now(), now() "
            "from public.projects as p"
        )
        conn.execute(
            "insert into public.milestone_payments (milestone_id, payer_id, payee_id, "
            "amount_minor, currency, status, created_at, updated_at) "
            "select m.id, p.owner_id, p.contractor_id, m.amount_minor, m.currency, 'funded', "
            "now(), now() from public.project_milestones as m "
            "join public.projects as p on p.id = m.project_id"
        )
        for table in ("projects", "project_milestones", "milestone_payments"):
            conn.execute(f"alter table public.{table} enable trigger user")
    conn.execute("vacuum analyze")


def compare(
    conn: Connection,
    *,
    name: str,
    rls_query: str,
    owner_query: str,
    owner_params: int,
    user_ids: list[uuid.UUID],
    samples: int,
    seed: int,
) -> Comparison:
    chooser = random.Random(seed)  # noqa: S311 - sampling, not secrets
    rls_ms: list[float] = []
    owner_ms: list[float] = []
    settings_ms: list[float] = []
    listed = 0
    for _ in range(samples):
        user = chooser.choice(user_ids)
        request = Request("authenticated", user_claims(user), method="GET", path=f"/rest/v1/{name}")
        settings = request.settings()
        set_all = "select " + ", ".join("set_config(%s, %s, true)" for _ in settings)
        flat = [part for pair in settings for part in pair]
        order = [True, False]
        chooser.shuffle(order)
        for with_rls in order:
            with conn.transaction():
                if with_rls:
                    conn.execute("set transaction read only")
                    started = time.perf_counter()
                    conn.execute(set_all, flat)
                    settings_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    rows = conn.execute(rls_query).fetchall()
                    rls_ms.append((time.perf_counter() - started) * 1000)
                    listed += len(rows)
                else:
                    started = time.perf_counter()
                    conn.execute(owner_query, [user] * owner_params).fetchall()
                    owner_ms.append((time.perf_counter() - started) * 1000)
    return Comparison(
        name=name,
        samples=samples,
        rows_per_listing=listed / samples,
        rls_median_ms=statistics.median(rls_ms),
        owner_median_ms=statistics.median(owner_ms),
        settings_median_ms=statistics.median(settings_ms),
    )


def run(
    url: str, *, users: int, rows: int, payments: int, samples: int, seed: int
) -> tuple[float, list[Comparison]]:
    """Load the data, then compare; returns the load's seconds and the comparisons. `url`
    must log in as the tables' owner."""
    with connect(url) as conn:
        started = time.perf_counter()
        load(conn, users=users, rows=rows, payments=payments, seed=seed)
        loaded_s = time.perf_counter() - started
        user_ids = [row[0] for row in conn.execute("select id from public.users")]
        results = [
            compare(
                conn,
                name="payment_transactions",
                rls_query="select * from public.payment_transactions",
                owner_query="select * from public.payment_transactions where user_id = %s",
                owner_params=1,
                user_ids=user_ids,
                samples=samples,
                seed=seed,
            ),
            compare(
                conn,
                name="milestone_payments",
                rls_query="select * from public.milestone_payments",
                owner_query=(
                    "select * from public.milestone_payments where payer_id = %s or payee_id = %s"
                ),
                owner_params=2,
                user_ids=user_ids,
                samples=samples,
                seed=seed + 1,
            ),
        ]
    return loaded_s, results
