"""`payguard audit …`: seal the audit log's hash chain, report its backlog, verify it, anchor
its head."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from payguard.audit.chain import Anchor, current_anchor
from payguard.audit.chain import verify as verify_chain
from payguard.audit.retention import purge as run_purge
from payguard.audit.sealer import SealRun, follow, seal_now
from payguard.audit.status import seal_status, wait_until_sealed
from payguard.cli.common import DbUrl, Json, deployed_url, err, out, print_json
from payguard.errors import ExitCode, PayguardError, UsageError

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


def parse_anchor(text: str | None) -> Anchor | None:
    if text is None:
        return None
    try:
        return Anchor.parse(text)
    except PayguardError as exc:
        raise UsageError(f"--anchor: {exc}") from None


@app.command()
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
    as_json: Json = False,
) -> None:
    """Recompute the hash chain and report the first bad row; exit 1 if there is one."""
    wanted = parse_anchor(anchor)
    url = deployed_url(ctx, db_url)
    verdict = verify_chain(url, from_seq=from_seq, anchor=wanted)
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
        raise typer.Exit(code=ExitCode.FINDING)


@app.command()
def anchor(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Print the chain's current head (seq, hash, time), to keep outside the database."""
    head = current_anchor(deployed_url(ctx, db_url))
    if head is None:
        raise PayguardError("nothing is sealed yet: run `payguard audit seal` first")
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
def seal(
    ctx: typer.Context,
    db_url: DbUrl = None,
    keep_going: Annotated[
        bool, typer.Option("--follow", help="Keep sealing until interrupted.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="With --follow: seconds between calls (a row waits one to two).")
    ] = 0.25,
    as_json: Json = False,
) -> None:
    """Seal every audit row committed so far (or, with --follow, as they come; with --json,
    one JSON object a line)."""
    if interval <= 0:
        raise typer.BadParameter("must be positive", param_hint="--interval")
    url = deployed_url(ctx, db_url)

    def show(run: SealRun, done: str) -> None:
        if as_json:
            typer.echo(json.dumps({"sealed": run.sealed, "through_seq": run.through_seq}))
        else:
            out.print(f"sealed {run.sealed} rows{done}{run.through_seq}")

    if keep_going:
        try:
            follow(url, interval=interval, report=lambda run: show(run, " through "))
        except KeyboardInterrupt:
            return
        return
    show(seal_now(url), "; the chain is sealed through seq ")


@app.command()
def status(
    ctx: typer.Context,
    db_url: DbUrl = None,
    wait: Annotated[
        float | None,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            help="First wait up to SECONDS for the rows written so far to be sealed by the "
            "scheduled sealer (this command seals nothing); exit 1 if they are not.",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """The sealing backlog: rows not sealed yet, the oldest one's age, the last seal, and the
    pg_cron jobs that seal; exit 1 when the oldest unsealed row is older than the alert
    threshold (the setting audit_seal_alert_seconds)."""
    url = deployed_url(ctx, db_url)
    if wait is not None and wait < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="--wait")
    sealed_in_time = True
    if wait is None:
        found = seal_status(url)
    else:
        found, sealed_in_time = wait_until_sealed(url, wait)
    if as_json:
        print_json(
            found.as_dict()
            if wait is None
            else {**found.as_dict(), "sealed_in_time": sealed_in_time}
        )
    else:
        last = found.last_sealed_at.isoformat() if found.last_sealed_at else "never"
        age = found.oldest_unsealed_seconds
        waiting = (
            "every row is sealed"
            if age is None
            else f"{found.unsealed_rows} row{'' if found.unsealed_rows == 1 else 's'} "
            f"not sealed yet, the oldest for {age:.0f} s"
        )
        out.print(
            f"audit log: {waiting}; sealed through seq {found.sealed_through}, last seal {last}"
        )
        if found.scheduled_jobs:
            for job in found.scheduled_jobs:
                out.print(f"sealer (pg_cron): {job}", markup=False)
        else:
            out.print(
                "sealer: no pg_cron job in this database; run `payguard audit seal --follow`",
                markup=False,
            )
        if found.overdue:
            err.print(
                f"the oldest unsealed row is older than {found.alert_after_seconds} s "
                "(audit_seal_alert_seconds): is the sealer running?",
                markup=False,
            )
    if not sealed_in_time and not as_json:
        err.print(
            f"the rows written before this call were not sealed within {wait:g} s: "
            "is the sealer scheduled?",
            markup=False,
        )
    if found.overdue or not sealed_in_time:
        raise typer.Exit(code=ExitCode.FINDING)


@app.command()
def purge(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Remove the sealed audit rows older than the retention period (10 years), from the
    start of the chain; the run is recorded and audited. Run it as the database owner."""
    summary = run_purge(deployed_url(ctx, db_url))
    if as_json:
        print_json(summary)
    elif summary.get("purged_rows"):
        out.print(
            f"purged {summary['purged_rows']} audit rows through seq {summary['through_seq']} "
            f"(older than {summary['older_than']})"
        )
    else:
        out.print(f"nothing to purge: no sealed audit row is older than {summary['older_than']}")
