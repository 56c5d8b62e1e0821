"""`payguard bench`: benchmarks, each against a baseline measured in the same run."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from payguard.bench import audit_verify, card_guard, rls, tokens, transitions
from payguard.cli.common import Json, out, print_json, state
from payguard.cluster import APP_ROLE, Cluster
from payguard.databases import recreate_database
from payguard.functions import deno_binary
from payguard.reset import reset

RLS_DATABASE = "payguard_bench"
RELEASE_DATABASE = "payguard_bench_release"
PGBENCH_DATABASE = "payguard_pgbench"
CARD_DATABASE = "payguard_bench_card"
SEALING_DATABASE = "payguard_bench_sealing"


class Suite(StrEnum):
    all = "all"
    rls = "rls"
    transitions = "transitions"
    audit = "audit"
    card = "card"
    webhooks = "webhooks"
    tokens = "tokens"


def bench(
    ctx: typer.Context,
    only: Annotated[Suite, typer.Option(help="Which benchmark to run.")] = Suite.all,
    users: Annotated[int, typer.Option(help="RLS: users owning the rows.")] = 10_000,
    rows: Annotated[int, typer.Option(help="RLS: payment_transactions rows.")] = 1_000_000,
    payments: Annotated[int, typer.Option(help="RLS: milestone_payments rows.")] = 200_000,
    samples: Annotated[int, typer.Option(help="RLS: listings timed per side.")] = 400,
    releases: Annotated[int, typer.Option(help="Transitions: payments to release.")] = 8_000,
    clients: Annotated[int, typer.Option(help="Transitions: concurrent clients.")] = 8,
    audit_rows: Annotated[
        int, typer.Option(help="Audit: rows in the log that `audit verify` checks.")
    ] = 1_000_000,
    webhook_events: Annotated[
        int, typer.Option(help="Webhooks: events applied per side (function, SQL).")
    ] = 400,
    webhook_clients: Annotated[
        int, typer.Option(help="Webhooks: concurrent senders per side.")
    ] = 8,
    flows: Annotated[int, typer.Option(help="Webhooks: end-to-end flows timed.")] = 3,
    token_values: Annotated[
        int, typer.Option(help="Tokens: values sealed, opened and looked up per runtime.")
    ] = 20_000,
    token_rows: Annotated[
        int, typer.Option(help="Tokens: payment methods that `keys rotate` re-seals.")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the data and the sampling.")] = 7,
    as_json: Json = False,
) -> None:
    """Deploy databases of their own, load them, and report ratios to same-run baselines:
    RLS listings against the owner's explicit queries; releases per second against
    pgbench's TPC-B, with the audit trail on and off; the audit sealer's lag; the speed
    of `audit verify` over a million-row log (grown from the release benchmark's); and the
    card-number guard's false positives, card numbers found and cost per call, against the
    previous guard; Stripe's webhooks applied per second through the served stripe-webhook
    function against the same events applied by SQL, and the end-to-end flow's time (needs
    the dev extras: it runs on the test stack); processor tokens sealed, opened and looked up
    per second in Python and in Deno against bare AES-256-GCM, and `keys rotate` rows per
    second against the same batches written back without cryptography."""
    project = state(ctx).project()
    cluster = Cluster.for_project(project)
    report: dict[str, object] = {}
    if only in (Suite.all, Suite.rls):
        reset(project, database=RLS_DATABASE, seed=False)
        loaded_s, results = rls.run(
            cluster.socket_url(APP_ROLE, RLS_DATABASE),
            users=users,
            rows=rows,
            payments=payments,
            samples=samples,
            seed=seed,
        )
        report["rls"] = {
            "load_seconds": round(loaded_s, 1),
            "results": [r.as_dict() for r in results],
        }
        if not as_json:
            table = Table(
                "table",
                "rows",
                "RLS ms",
                "owner ms",
                "ratio",
                "set ms",
                title=f"RLS overhead: medians of {samples} interleaved listings each "
                f"(data loaded in {loaded_s:.1f} s)",
            )
            for r in results:
                table.add_row(
                    r.name,
                    f"{r.rows_per_listing:.1f}",
                    f"{r.rls_median_ms:.3f}",
                    f"{r.owner_median_ms:.3f}",
                    f"{r.ratio:.3f}x",
                    f"{r.settings_median_ms:.3f}",
                )
            out.print(table)
    if only in (Suite.all, Suite.transitions, Suite.audit):
        reset(project, database=RELEASE_DATABASE, seed=False)
        recreate_database(cluster.admin_url(), PGBENCH_DATABASE)
        result = transitions.run(
            cluster.socket_url(APP_ROLE, RELEASE_DATABASE),
            (str(cluster.socket_dir), cluster.port() or 0, "authenticator", RELEASE_DATABASE),
            pgbench_target=(
                str(cluster.socket_dir),
                cluster.port() or 0,
                APP_ROLE,
                PGBENCH_DATABASE,
            ),
            payments=releases,
            clients=clients,
            pgbench_seconds=10,
        )
        report["transitions"] = result.as_dict()
        if not as_json:
            table = Table(
                "clients",
                "releases",
                "releases/s",
                "pgbench TPC-B tps",
                "ratio",
                "audit off: releases/s",
                "audit cost",
                title="Full funded->released transitions (audit trail on) against TPC-B, "
                "same server, same run; and with the audit trail off, in alternate rounds",
            )
            table.add_row(
                str(result.clients),
                str(result.releases),
                f"{result.tps:.0f}",
                f"{result.pgbench_tps:.0f}",
                f"{result.ratio:.3f}x",
                f"{result.unaudited_tps:.0f}",
                f"{result.audit_cost:.1%}",
            )
            out.print(table)
            out.print(
                "rounds (releases/s): "
                + ", ".join(f"{'on' if a else 'off'} {r:.0f}" for a, r in result.rounds)
            )
            lag = result.lag
            out.print(
                f"audit sealing lag under that load, over {lag.rows} rows "
                f"({result.audit_rows_per_release:.1f} per release): median "
                f"{lag.median_s:.3f} s, p99 {lag.p99_s:.3f} s, max {lag.max_s:.3f} s"
            )
    if only in (Suite.all, Suite.audit):
        speed = audit_verify.run(cluster.socket_url(APP_ROLE, RELEASE_DATABASE), audit_rows)
        report["audit_verify"] = speed.as_dict()
        if not as_json:
            out.print(
                f"audit verify: {speed.rows:,} rows in {speed.verify_seconds:.2f} s, "
                f"{speed.rows_per_second:,.0f} rows/s (sealed at "
                f"{speed.rows / speed.seal_seconds:,.0f} rows/s; log grown in "
                f"{speed.grow_seconds:.0f} s)"
            )
    if only in (Suite.all, Suite.card):
        reset(project, database=CARD_DATABASE, seed=False)
        guard = card_guard.run(cluster.socket_url(APP_ROLE, CARD_DATABASE))
        report["card_guard"] = guard.as_dict()
        if not as_json:
            table = Table(
                "guard",
                "false positives",
                "card numbers found",
                title="Card-number guard: text that holds no card number, and every form of "
                "every test card number (payguard.card_corpus)",
            )
            for side in ("previous", "present"):
                fp, found = guard.false_positives[side], guard.found[side]
                table.add_row(
                    side,
                    f"{fp.flagged}/{fp.lines} ({fp.rate:.2%})",
                    f"{found.flagged}/{found.lines} ({found.rate:.1%})",
                )
            out.print(table)
            for c in guard.costs:
                out.print(
                    f"cost per call on {c.corpus} ({c.calls} calls, medians of interleaved "
                    f"rounds): previous {c.previous_us:.2f} us, present {c.present_us:.2f} us, "
                    f"ratio {c.ratio:.2f}"
                )
    if only in (Suite.all, Suite.webhooks):
        from payguard.bench import webhooks  # the test stack: needs the dev extras

        hooks = webhooks.serve_and_run(
            project,
            cluster,
            events=webhook_events,
            clients=webhook_clients,
            flows=flows,
            seed=seed,
            progress=(lambda _: None) if as_json else out.print,
        )
        report["webhooks"] = hooks.as_dict()
        if not as_json:
            table = Table(
                "clients",
                "events/side",
                "function events/s",
                "SQL events/s",
                "ratio",
                title="payment_intent.succeeded applied through the served stripe-webhook "
                "(signed, verified, one transaction) against apply_stripe_event by SQL, "
                "alternating rounds of the same run",
            )
            table.add_row(
                str(hooks.clients),
                str(hooks.events_per_side),
                f"{hooks.function_rate:.0f}",
                f"{hooks.sql_rate:.0f}",
                f"{hooks.ratio:.3f}x",
            )
            out.print(table)
            out.print(
                f"end-to-end flow (card saved to payout.paid), {len(hooks.flow_seconds)} runs: "
                f"median {hooks.flow_median:.2f} s ("
                + ", ".join(f"{s:.2f}" for s in hooks.flow_seconds)
                + "); steps of the median run: "
                + ", ".join(f"{k} {v:.2f}" for k, v in hooks.flow_steps.items())
            )
    if only in (Suite.all, Suite.tokens):
        reset(project, database=SEALING_DATABASE, seed=False)
        speeds = [
            tokens.python_speed(token_values),
            tokens.deno_speed(
                deno_binary(project), project.root / "supabase" / "functions", token_values
            ),
        ]
        rotation = tokens.rotation_speed(cluster.socket_url(APP_ROLE, SEALING_DATABASE), token_rows)
        report["tokens"] = tokens.TokenBench(speeds, rotation).as_dict()
        if not as_json:
            table = Table(
                "runtime",
                "encrypt/s",
                "decrypt/s",
                "lookup/s",
                "bare AES-GCM/s",
                "encrypt ratio",
                title=f"Processor tokens, {token_values:,} values (best of 3 rounds)",
            )
            for runtime in speeds:
                table.add_row(
                    runtime.runtime,
                    f"{runtime.encrypt_per_s:,.0f}",
                    f"{runtime.decrypt_per_s:,.0f}",
                    f"{runtime.lookup_per_s:,.0f}",
                    f"{runtime.bare_gcm_per_s:,.0f}",
                    f"{runtime.encrypt_per_s / runtime.bare_gcm_per_s:.3f}",
                )
            out.print(table)
            out.print(
                f"keys rotate over {rotation.rows:,} payment methods: re-sealed under a new key "
                f"at {rotation.reseal_rows_per_s:,.0f} rows/s; the same batches written back "
                f"without cryptography: {rotation.rewrite_rows_per_s:,.0f} rows/s "
                f"(ratio {rotation.reseal_ratio:.3f})"
            )
    if as_json:
        print_json(report)
