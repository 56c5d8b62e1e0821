"""`payguard keys`: the keys of processor tokens (no database needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard.cli.common import Json, print_json
from payguard.envelope import KEYS_VARIABLE, EnvelopeError
from payguard.errors import ExitCode, UsageError
from payguard.token_index import INDEX_KEYS_VARIABLE
from payguard.token_keys import check as check_keys
from payguard.token_keys import load, new_entry

app = typer.Typer(help="The keys of processor tokens: make one, check the sets.")

KeyFile = Annotated[
    Path | None,
    typer.Option(
        help="Read the keys from this file instead of the environment.", show_default=False
    ),
]


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
