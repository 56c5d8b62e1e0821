"""The `payguard` command. Commands are thin: they parse options, call the library and print.

A PayguardError anywhere below becomes a one-line error on stderr and exit code 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard.cli import (
    audit,
    bench,
    db,
    demo,
    deploy,
    describe,
    functions,
    policies,
    reconcile,
    schema,
    stripe,
    suites,
    token,
)
from payguard.cli.common import State

app = typer.Typer(
    name="payguard",
    help="Deploy, check and test payguard, the payment-security layer of InstaBids.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(policies.app, name="policies")
app.add_typer(audit.app, name="audit")
app.add_typer(stripe.app, name="stripe")
app.add_typer(functions.app, name="functions")
app.add_typer(schema.app, name="schema")
app.command("deploy")(deploy.deploy)
app.command("test")(suites.run_suites)
app.command("describe")(describe.describe)
app.command("demo")(demo.demo)
app.command("bench")(bench.bench)
app.command("reconcile")(reconcile.reconcile)
app.command("token")(token.token)


@app.callback()
def root(
    ctx: typer.Context,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="The Supabase project folder (default: the one holding the current folder).",
            envvar="PAYGUARD_PROJECT_DIR",
            file_okay=False,
        ),
    ] = None,
) -> None:
    ctx.obj = State(workdir=workdir)


def main() -> None:
    app()
