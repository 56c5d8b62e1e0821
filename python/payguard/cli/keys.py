"""`payguard keys`: the keys of processor tokens. `new` and `check` need no database; `status`,
`rotate`, `reindex` and `retire` read or rewrite the token columns (payguard.token_rotation,
payguard.token_reindex)."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from payguard.cli.common import DbUrl, Json, KeyFile, deployed_url, err, out, print_json
from payguard.envelope import KEYS_VARIABLE, EnvelopeError
from payguard.errors import ExitCode, PayguardError, UsageError
from payguard.token_index import INDEX_KEYS_VARIABLE
from payguard.token_index import lookups as token_lookups
from payguard.token_keys import check as check_keys
from payguard.token_keys import load, new_entry
from payguard.token_reindex import lookups_under
from payguard.token_reindex import reindex as reindex_tokens
from payguard.token_rotation import DEFAULT_BATCH, rows_sealed_under
from payguard.token_rotation import rotate as rotate_tokens
from payguard.token_rotation import status as token_status
from payguard.token_scan import scan as scan_tokens

app = typer.Typer(
    help="The keys of processor tokens: make one, check the sets, rotate, retire.",
    no_args_is_help=True,
)


@app.command()
def new(
    kid: Annotated[
        str | None, typer.Option(help="The key's id (default: k and today's UTC date).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Print a new key entry, kid:base64url of 32 random bytes, to put first in
    PAYGUARD_TOKEN_KEYS or PAYGUARD_TOKEN_INDEX_KEYS (supabase secrets set)."""
    try:
        entry = new_entry(kid)
    except EnvelopeError as exc:
        raise UsageError(f"--kid: {exc}") from None
    if as_json:
        print_json({"kid": entry.split(":", 1)[0], "entry": entry})
    else:
        typer.echo(entry)


@app.command()
def check(
    key_file: KeyFile = None,
    index_key_file: KeyFile = None,
    as_json: Json = False,
) -> None:
    """Read the key sets as the runtimes would ($PAYGUARD_TOKEN_KEYS and
    $PAYGUARD_TOKEN_INDEX_KEYS, or files) and list their key ids, the current first; exit 1
    when one key serves both. Keys are never printed."""
    report = check_keys(load(KEYS_VARIABLE, key_file), load(INDEX_KEYS_VARIABLE, index_key_file))
    if as_json:
        print_json(report.as_dict())
    else:
        typer.echo(
            f"envelope keys  {', '.join(report.envelope_ids)}  (current: {report.envelope_ids[0]})"
        )
        typer.echo(
            f"index keys     {', '.join(report.index_ids)}  (current: {report.index_ids[0]})"
        )
        for envelope_id, index_id in report.shared:
            typer.echo(
                f"shared         envelope key {envelope_id} is index key {index_id}: "
                "give each its own"
            )
    if report.shared:
        raise typer.Exit(code=ExitCode.FINDING)


@app.command()
def status(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Count each token column's rows per envelope key id and per index key id, and the rows
    still held only in the clear on a database deployed before tokens were sealed (a rotation
    seals them). Needs no key."""
    columns = token_status(deployed_url(ctx, db_url))
    if as_json:
        print_json({"columns": [c.as_dict() for c in columns]})
        return
    for column in columns:
        sealed = ", ".join(f"{kid} {n}" for kid, n in column.sealed_by_kid.items()) or "-"
        looked_up = ", ".join(f"{kid} {n}" for kid, n in column.lookups_by_kid.items()) or "-"
        out.print(
            f"{column.name}: {column.rows} rows, {column.to_do} to seal; "
            f"sealed under {sealed}; lookups under {looked_up}",
            markup=False,
        )


@app.command()
def rotate(
    ctx: typer.Context,
    db_url: DbUrl = None,
    key_file: KeyFile = None,
    index_key_file: KeyFile = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Rows re-sealed per transaction.")
    ] = DEFAULT_BATCH,
    as_json: Json = False,
) -> None:
    """Re-seal every processor token under the current (first) envelope key, in batches (on a
    database deployed before tokens were sealed, seal those still in the clear and fill their
    lookups); resumes an interrupted run. Deploy the new key first to the functions (first in
    PAYGUARD_TOKEN_KEYS, the old one after it)."""
    envelope_keys = load(KEYS_VARIABLE, key_file)
    index_keys = load(INDEX_KEYS_VARIABLE, index_key_file)
    url = deployed_url(ctx, db_url)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"sealing under {envelope_keys.current}", total=None)
        run = rotate_tokens(
            url,
            envelope_keys,
            index_keys,
            batch_size=batch_size,
            on_start=lambda total: progress.update(task, total=total),
            on_batch=lambda done: progress.advance(task, done),
        )
    if as_json:
        print_json(run.as_dict())
        return
    how = "resumed" if run.resumed else "new"
    out.print(
        f"rotation {run.rotation_id} ({how}) to key {run.target_kid}: {run.sealed} token "
        f"values sealed in {run.seconds:.1f} s; every token is sealed under {run.target_kid}",
        markup=False,
    )


@app.command()
def reindex(
    ctx: typer.Context,
    db_url: DbUrl = None,
    key_file: KeyFile = None,
    index_key_file: KeyFile = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Tokens looked up again per transaction.")
    ] = DEFAULT_BATCH,
    as_json: Json = False,
) -> None:
    """Move every lookup to the current (first) index key: each sealed token is opened,
    checked against its lookup, and looked up again, on its row and on every row that refers
    to it; in batches, resuming an interrupted run. Give the new index key first and the old
    one after it, as the functions hold them while it runs (docs/token-envelopes.md)."""
    envelope_keys = load(KEYS_VARIABLE, key_file)
    index_keys = load(INDEX_KEYS_VARIABLE, index_key_file)
    url = deployed_url(ctx, db_url)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"looking up under {index_keys.current}", total=None)
        run = reindex_tokens(
            url,
            envelope_keys,
            index_keys,
            batch_size=batch_size,
            on_start=lambda total: progress.update(task, total=total),
            on_batch=lambda done: progress.advance(task, done),
        )
    if as_json:
        print_json(run.as_dict())
        return
    how = "resumed" if run.resumed else "new"
    out.print(
        f"reindex {run.rotation_id} ({how}) to index key {run.target_kid}: {run.moved} lookups "
        f"moved in {run.seconds:.1f} s",
        markup=False,
    )
    if run.left:
        out.print(
            "left under older index keys (tokens known by their lookup alone): "
            + ", ".join(f"{name} {n}" for name, n in run.left.items()),
            markup=False,
        )


@app.command()
def retire(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(help="The envelope (or, with --index, index) key id.")],
    db_url: DbUrl = None,
    key_file: KeyFile = None,
    index: Annotated[
        bool, typer.Option("--index", help="KID is an index key (PAYGUARD_TOKEN_INDEX_KEYS).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Say whether envelope key KID may be removed from PAYGUARD_TOKEN_KEYS: exit 1 while any
    token is still sealed under it (run `payguard keys rotate` first), or while it is the
    current key of the set given ($PAYGUARD_TOKEN_KEYS or --key-file), which seals new ones.
    With --index, whether index key KID may be removed from PAYGUARD_TOKEN_INDEX_KEYS: exit 1
    while any lookup is under it (`payguard keys reindex`)."""
    if index:
        _retire_index(ctx, kid, db_url, as_json)
        return
    given = key_file is not None or bool(os.environ.get(KEYS_VARIABLE))
    if given and load(KEYS_VARIABLE, key_file).current == kid:
        raise PayguardError(
            f"key {kid} is the current key: it seals every new token; put a new key first "
            "and rotate before retiring it"
        )
    left = rows_sealed_under(deployed_url(ctx, db_url), kid)
    if as_json:
        print_json({"kid": kid, "retirable": not left, "sealed_under_it": left})
    elif left:
        err.print(
            f"key {kid} still seals {sum(left.values())} tokens "
            f"({', '.join(f'{name} {n}' for name, n in left.items())}): run payguard keys "
            "rotate with a newer current key first",
            markup=False,
        )
    else:
        out.print(f"no token is sealed under {kid}: remove it from PAYGUARD_TOKEN_KEYS")
    if left:
        raise typer.Exit(code=ExitCode.FINDING)


def _retire_index(ctx: typer.Context, kid: str, db_url: str | None, as_json: bool) -> None:
    left = lookups_under(deployed_url(ctx, db_url), kid)
    if as_json:
        print_json({"kid": kid, "retirable": not left, "lookups_under_it": left})
    elif left:
        err.print(
            f"index key {kid} still holds {sum(left.values())} lookups "
            f"({', '.join(f'{name} {n}' for name, n in left.items())}): run payguard keys "
            "reindex with a newer current index key first; a token known by its lookup alone "
            "is found only while its key is kept",
            markup=False,
        )
    else:
        out.print(f"no lookup is under {kid}: remove it from PAYGUARD_TOKEN_INDEX_KEYS")
    if left:
        raise typer.Exit(code=ExitCode.FINDING)


@app.command()
def lookup(
    stripe_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="A Stripe id (pm_, cus_, acct_, ba_ or card_), or - for stdin."
        ),
    ],
    index_key_file: KeyFile = None,
    as_json: Json = False,
) -> None:
    """Print a token's lookup under every index key, the current first: what support filters
    a lookup column by (payment_methods?processor_payment_method_id_lookup=eq.…)."""
    if stripe_id == "-":
        stripe_id = typer.get_text_stream("stdin").read().strip()
    found = token_lookups(load(INDEX_KEYS_VARIABLE, index_key_file), stripe_id)
    if as_json:
        print_json({"lookups": found})
    else:
        for line in found:
            typer.echo(line)


@app.command()
def scan(ctx: typer.Context, db_url: DbUrl = None, as_json: Json = False) -> None:
    """Search every text and JSON column of every table for processor tokens (pm_, cus_, acct_,
    ba_, card_ ids) in the clear; list each column that holds one and how many rows, never a
    token, and exit 1 if any does. Run it with the admin URL to see every schema."""
    findings = scan_tokens(deployed_url(ctx, db_url))
    if as_json:
        print_json({"findings": [f.as_dict() for f in findings], "clean": not findings})
    elif findings:
        for finding in findings:
            err.print(
                f"{finding.table}.{finding.column}: {finding.rows} rows hold a token in the clear",
                markup=False,
            )
    else:
        out.print("no processor token is stored in the clear")
    if findings:
        raise typer.Exit(code=ExitCode.FINDING)
