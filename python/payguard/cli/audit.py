"""`payguard audit …`: seal the audit log's hash chain, verify it, anchor its head."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.audit.chain import Anchor, current_anchor
from payguard.audit.chain import verify as verify_chain
from payguard.audit.retention import purge as run_purge
from payguard.audit.sealer import follow, seal_now
from payguard.cli.common import boundary, err, out, print_json, state, target
from payguard.cli.deploy import DbUrl

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


@app.command()
@boundary
def verify(
    ctx: typer.Context,
    db_url: DbUrl = None,
    from_seq: Annotated[
        int | None,
        typer.Option("--from", help="Start at this seq, trusting the sealed row before it."),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor", metavar="SEQ:HASH", help="Also prove the log still extends this head."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Recompute the hash chain and report the first bad row; exit 1 if there is one."""
    url = target(state(ctx).project(), db_url).url
    verdict = verify_chain(url, from_seq=from_seq, anchor=Anchor.parse(anchor) if anchor else None)
    rate = verdict.checked / verdict.seconds if verdict.seconds else 0.0
    if as_json:
        print_json(
            {
                "ok": verdict.ok,
                "first_bad_seq": verdict.first_bad,
                "reason": verdict.reason or None,
                "rows_checked": verdict.checked,
                "sealed_through": verdict.sealed_through,
                "unsealed_rows": verdict.unsealed,
                "anchor_checked": verdict.anchor_checked,
                "seconds": round(verdict.seconds, 3),
            }
        )
    elif verdict.ok:
        anchored = f"; it extends anchor {anchor}" if verdict.anchor_checked else ""
        out.print(
            f"verified: {verdict.checked} rows, sealed through seq {verdict.sealed_through}, "
            f"{verdict.unsealed} not sealed yet{anchored} "
            f"({verdict.seconds:.2f} s, {rate:,.0f} rows/s)"
        )
    else:
        err.print(f"first bad seq {verdict.first_bad}: {verdict.reason}", markup=False)
    if not verdict.ok:
        raise typer.Exit(code=1)


@app.command()
@boundary
def anchor(ctx: typer.Context, db_url: DbUrl = None, as_json: AsJson = False) -> None:
    """Print the chain's current head (seq, hash, time), to keep outside the database."""
    head = current_anchor(target(state(ctx).project(), db_url).url)
    if head is None:
        err.print("nothing is sealed yet: run `payguard audit seal` first")
        raise typer.Exit(code=1)
    found, sealed_at = head
    if as_json:
        print_json(
            {
                "seq": found.seq,
                "hash": found.row_hash.hex(),
                "sealed_at": sealed_at,
                "anchor": str(found),
            }
        )
    else:
        out.print(f"{found}  sealed at {sealed_at}")


@app.command()
@boundary
def seal(
    ctx: typer.Context,
    db_url: DbUrl = None,
    keep_going: Annotated[
        bool, typer.Option("--follow", help="Keep sealing until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="With --follow: seconds between calls (a row waits one to two).")
    ] = 0.25,
) -> None:
    """Seal every audit row committed so far (or, with --follow, as they come)."""
    url = target(state(ctx).project(), db_url).url
    if keep_going:
        try:
            follow(
                url,
                interval=interval,
                report=lambda run: out.print(f"sealed {run.sealed} rows through {run.through_seq}"),
            )
        except KeyboardInterrupt:
            return
        return
    run = seal_now(url)
    out.print(f"sealed {run.sealed} rows; the chain is sealed through seq {run.through_seq}")


@app.command()
@boundary
def purge(ctx: typer.Context, db_url: DbUrl = None, as_json: AsJson = False) -> None:
    """Remove the sealed audit rows older than the retention period (10 years), from the
    start of the chain; the run is recorded and audited. Run it as the database owner."""
    summary = run_purge(target(state(ctx).project(), db_url).url)
    if as_json:
        print_json(summary)
    elif summary.get("purged_rows"):
        out.print(
            f"purged {summary['purged_rows']} audit rows through seq {summary['through_seq']} "
            f"(older than {summary['older_than']})"
        )
    else:
        out.print(f"nothing to purge: no sealed audit row is older than {summary['older_than']}")
