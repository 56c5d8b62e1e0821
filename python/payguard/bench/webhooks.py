"""Webhooks applied per second through the served `stripe-webhook` function against the same
events applied directly by SQL, in the same run; and the end-to-end flow's time.

Both sides apply `payment_intent.succeeded` events, each funding its own pending milestone
payment (so that every event does the full work: record, checks, ledger posting, audit rows,
notifications), from `clients` concurrent workers, in alternating rounds:
- through the function: each event signed as Stripe signs it (`Stripe-Signature`, the
  endpoint's secret) and POSTed to the served function, which verifies the signature and runs
  `apply_stripe_event` as payment_service in its own transaction (its connection pool);
- directly: one persistent connection per worker, each event one transaction that sets the
  request as the function does (role payment_service, its claims) and runs the same
  `select public.apply_stripe_event(...)`.

The flow (payguard.testing.stripe_flow) is timed end to end, with its steps."""

from __future__ import annotations

import json
import random
import statistics
import string
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from payguard.cluster import APP_ROLE, Cluster
from payguard.errors import PayguardError
from payguard.functions import Functions, StripeSettings, supabase_environment
from payguard.local_stripe import API_KEY, TEST_EXTENSION, LocalStripe
from payguard.project import Project
from payguard.template import clone_template, drop_clone, ensure_template
from payguard.testing.local_stack import FunctionsClient, StripeTestApi, http
from payguard.testing.request import Request
from payguard.testing.stripe_flow import Border, Flow, post_event, signature

AMOUNT = 12_345
WEBHOOK_PATH = "/functions/v1/stripe-webhook"


@dataclass(frozen=True)
class Round:
    side: str  # "function" or "sql"
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds


@dataclass
class WebhookBench:
    events_per_side: int
    clients: int
    rounds: list[Round] = field(default_factory=list)
    flow_seconds: list[float] = field(default_factory=list)
    flow_steps: dict[str, float] = field(default_factory=dict)

    def rate(self, side: str) -> float:
        """Events per second over all of a side's rounds."""
        mine = [r for r in self.rounds if r.side == side]
        return sum(r.events for r in mine) / sum(r.seconds for r in mine)

    @property
    def function_rate(self) -> float:
        return self.rate("function")

    @property
    def sql_rate(self) -> float:
        return self.rate("sql")

    @property
    def ratio(self) -> float:
        """Through the function, as a fraction of direct SQL's rate."""
        return self.function_rate / self.sql_rate

    @property
    def flow_median(self) -> float:
        return statistics.median(self.flow_seconds) if self.flow_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_per_side": self.events_per_side,
            "clients": self.clients,
            "function_events_per_second": round(self.function_rate, 1),
            "sql_events_per_second": round(self.sql_rate, 1),
            "ratio": round(self.ratio, 3),
            "rounds": [{**asdict(r), "rate": round(r.rate, 1)} for r in self.rounds],
            "flow_seconds": [round(s, 3) for s in self.flow_seconds],
            "flow_median_seconds": round(self.flow_median, 3),
            "flow_steps_median_run": {k: round(v, 3) for k, v in self.flow_steps.items()},
        }


def letters(rng: random.Random, n: int) -> str:
    """Random letters: Stripe-like ids with no digits that could line up into a card number."""
    return "".join(rng.choice(string.ascii_letters) for _ in range(n))


def pending_payments(database_url: str, count: int, rng: random.Random) -> list[uuid.UUID]:
    """`count` pending USD payments of AMOUNT, each of its own payer and project (so that no
    payer meets a velocity limit), made in bulk as the schema owner."""
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "create temporary table bench_payments (payment uuid, payer uuid, payee uuid, "
            "project uuid, milestone uuid)"
        )
        with conn.cursor().copy("copy bench_payments from stdin") as copy:
            for payment in ids:
                copy.write_row((payment, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()))
        with conn.transaction():
            conn.execute(
                "insert into auth.users (id, aud, role, email, raw_user_meta_data) "
                "select u.id, 'authenticated', 'authenticated', u.id || '@bench.example', "
                "jsonb_build_object('role', u.role) from ("
                "select payer as id, 'homeowner' as role from bench_payments union all "
                "select payee, 'contractor' from bench_payments) as u"
            )
            conn.execute(
                "insert into public.projects (id, owner_id, contractor_id, title) "
                "select project, payer, payee, 'Bench' from bench_payments"
            )
            conn.execute(
                "insert into public.project_milestones (id, project_id, position, title, "
                "amount_minor, currency) select milestone, project, 1, 'Step', %s, 'USD' "
                "from bench_payments",
                (AMOUNT,),
            )
            conn.execute(
                "insert into public.escrow_accounts (user_id, project_id, currency) "
                "select payer, project, 'USD' from bench_payments"
            )
            conn.execute(
                "insert into public.milestone_payments (id, milestone_id, payer_id) "
                "select payment, milestone, payer from bench_payments"
            )
    return ids


def succeeded_event(payment: uuid.UUID, rng: random.Random) -> bytes:
    """Stripe's `payment_intent.succeeded` for a PaymentIntent that charged `payment`."""
    intent = f"pi_{letters(rng, 24)}"
    event = {
        "id": f"evt_{letters(rng, 24)}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": "payment_intent.succeeded",
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": AMOUNT,
                "amount_received": AMOUNT,
                "currency": "usd",
                "status": "succeeded",
                "latest_charge": f"ch_{letters(rng, 24)}",
                "metadata": {"milestone_payment_id": str(payment)},
            }
        },
    }
    return json.dumps(event, indent=2).encode()


def through_function(url: str, secret: str, events: Sequence[bytes], clients: int) -> float:
    """POST each event, signed, to the function from `clients` workers; the seconds it took.
    Every event must be answered 200 `processed`."""

    def send(body: bytes) -> str:
        answer = post_event(url, body, signature(body, secret))
        if answer.status != 200 or not isinstance(answer.body, dict):
            return f"{answer.status} {answer.body}"
        return str(answer.body.get("status"))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(send, events))
    seconds = time.perf_counter() - started
    wrong = [s for s in statuses if s != "processed"]
    if wrong:
        raise RuntimeError(f"{len(wrong)} events not processed by the function: {wrong[:3]}")
    return seconds


def through_sql(app_url: str, events: Sequence[bytes], clients: int) -> float:
    """Apply each event with `select public.apply_stripe_event(...)` as payment_service, one
    transaction each, from `clients` persistent connections; the seconds it took."""
    request = Request("payment_service", {"role": "payment_service"}, "POST", WEBHOOK_PATH)
    settings = request.settings()
    # One statement, as the function sets the request up.
    set_request = "select " + ", ".join(["set_config(%s, %s, true)"] * len(settings))
    values = [v for pair in settings for v in pair]
    connections = [psycopg.connect(app_url, autocommit=True) for _ in range(clients)]
    chunks = [list(events[n::clients]) for n in range(clients)]

    def apply(worker: int) -> list[str]:
        conn, statuses = connections[worker], []
        for body in chunks[worker]:
            with conn.transaction():
                conn.execute(set_request, values)
                row = conn.execute(
                    "select public.apply_stripe_event(%s::jsonb) ->> 'status'", (body.decode(),)
                ).fetchone()
            statuses.append(str(row[0]) if row else "none")
        return statuses

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            statuses = [s for chunk in pool.map(apply, range(clients)) for s in chunk]
        seconds = time.perf_counter() - started
    finally:
        for conn in connections:
            conn.close()
    wrong = [s for s in statuses if s != "processed"]
    if wrong:
        raise RuntimeError(f"{len(wrong)} events not processed by SQL: {wrong[:3]}")
    return seconds


def run(
    border: Border,
    webhook_url: str,
    webhook_secret: str,
    *,
    events: int = 400,
    clients: int = 8,
    rounds: int = 4,
    flows: int = 3,
    seed: int = 7,
    progress: Callable[[str], None] = lambda _: None,
) -> WebhookBench:
    """`events` per side, in `rounds` alternating rounds per side (function first, then SQL,
    then SQL first...), after `2 * clients` untimed events per side; then the flow `flows`
    times."""
    rng = random.Random(seed)  # noqa: S311 - ids for a benchmark, not secrets
    result = WebhookBench(events_per_side=events, clients=clients)
    per_round = max(1, events // rounds)
    sizes = [per_round] * (events // per_round) + (
        [events % per_round] if events % per_round else []
    )
    warmup = 2 * clients
    progress(f"making {2 * (events + warmup)} pending payments")
    payments = pending_payments(border.database_url, 2 * (sum(sizes) + warmup), rng)
    bodies = [succeeded_event(p, rng) for p in payments]
    # Untimed, first: each side's connections made and its code warm (Deno compiles lazily).
    through_function(webhook_url, webhook_secret, bodies[:warmup], clients)
    through_sql(border.app_url, bodies[warmup : 2 * warmup], clients)
    bodies = bodies[2 * warmup :]
    half = len(bodies) // 2
    sides = {"function": bodies[:half], "sql": bodies[half:]}
    taken = {"function": 0, "sql": 0}
    for number, size in enumerate(sizes):
        order = ("function", "sql") if number % 2 == 0 else ("sql", "function")
        for side in order:
            batch = sides[side][taken[side] : taken[side] + size]
            taken[side] += size
            if side == "function":
                seconds = through_function(webhook_url, webhook_secret, batch, clients)
            else:
                seconds = through_sql(border.app_url, batch, clients)
            result.rounds.append(Round(side, len(batch), seconds))
            progress(f"round {number + 1} {side}: {len(batch) / seconds:.0f} events/s")
    funded = border.scalar(
        "select count(*) from public.milestone_payments where id = any(%s) and status = 'funded'",
        (payments,),
    )
    if funded != len(payments):
        raise RuntimeError(f"{funded} of {len(payments)} payments funded")
    border.lift_holds()
    runs: list[Flow] = []
    for number in range(flows):
        flow = Flow(border).run()
        runs.append(flow)
        result.flow_seconds.append(flow.total)
        progress(f"flow {number + 1}: {flow.total:.2f} s")
    if runs:
        median = sorted(runs, key=lambda f: f.total)[len(runs) // 2]
        result.flow_steps = dict(median.timings)
    return result


def serve_and_run(
    project: Project,
    cluster: Cluster,
    *,
    delivery_delay: float = 0.1,
    **options: Any,
) -> WebhookBench:
    """The whole benchmark on a stack of its own: a clone of the test template (the schema and
    the test helpers), localstripe with the test extension (webhooks sent `delivery_delay`
    seconds after the call: localstripe's own wait is a second), and the functions served by
    Deno with Supabase's environment; all of it thrown away afterwards. `options` go to run()."""
    ensure_template(cluster, project)
    database, _ = clone_template(cluster, "bench_webhooks")
    with tempfile.TemporaryDirectory(prefix="payguard-bench-") as scratch:
        local = LocalStripe(Path(scratch) / "stripe")
        functions = Functions(project, project.supabase_dir / "functions", Path(scratch) / "fn")
        try:
            local.start(extension=project.root / TEST_EXTENSION, persist=False)
            status = local.status()
            if status.api_base is None:
                raise PayguardError("the local Stripe did not start")
            answer = http("POST", f"{status.api_base}/_config/delivery", {"delay": delivery_delay})
            if answer.status != 200:
                raise PayguardError(f"cannot configure webhook delivery: {answer.body}")
            settings = StripeSettings(status.api_base, API_KEY, local.webhook_secret())
            functions.serve(supabase_environment(project, cluster.url(database), settings))
            webhook = functions.webhook_url()
            if webhook is None:
                raise PayguardError("stripe-webhook is not served")
            local.deliver_webhooks_to(webhook)
            with Border(
                cluster.socket_url(APP_ROLE, database),
                cluster.socket_url("authenticator", database),
                FunctionsClient(functions),
                StripeTestApi(local, local.client()),
            ) as border:
                return run(border, webhook, local.webhook_secret(), **options)
        finally:
            functions.stop()
            local.stop()
            drop_clone(cluster, database)
