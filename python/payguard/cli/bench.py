"""`payguard bench`: the cost of row-level security, as ratios to the owner's own query."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from payguard.bench.rls import run
from payguard.cli.common import boundary, out, print_json, state
from payguard.cluster import APP_ROLE, Cluster
from payguard.reset import reset

BENCH_DATABASE = "payguard_bench"


@boundary
def bench(
    ctx: typer.Context,
    users: Annotated[int, typer.Option(help="Users owning the rows.")] = 10_000,
    rows: Annotated[int, typer.Option(help="payment_transactions rows.")] = 1_000_000,
    payments: Annotated[int, typer.Option(help="milestone_payments rows.")] = 200_000,
    samples: Annotated[int, typer.Option(help="Listings timed per side.")] = 400,
    seed: Annotated[int, typer.Option(help="Seed of the data and the sampling.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Deploy a database of its own, load it, and time users' listings under RLS against the
    owner's explicit queries, interleaved in the same run."""
    project = state(ctx).project()
    cluster = Cluster.for_project(project)
    reset(project, database=BENCH_DATABASE, seed=False)
    loaded_s, results = run(
        cluster.socket_url(APP_ROLE, BENCH_DATABASE),
        users=users,
        rows=rows,
        payments=payments,
        samples=samples,
        seed=seed,
    )
    if as_json:
        print_json({"load_seconds": round(loaded_s, 1), "results": [r.as_dict() for r in results]})
        return
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
