"""The `payguard` command. Commands are thin: they parse options, call the library and print.

The root command's class (payguard.cli.common.PayguardGroup) is the boundary of every
command: an error becomes one line on stderr and an exit code (payguard.errors.ExitCode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard import __version__
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
    standin,
    stripe,
    suites,
    token,
)
from payguard.cli.common import PayguardGroup, State

app = typer.Typer(
    name="payguard",
    cls=PayguardGroup,
    help="Deploy, check and test payguard, the payment-security layer of InstaBids.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")
app.add_typer(policies.app, name="policies")
app.add_typer(audit.app, name="audit")
app.add_typer(stripe.app, name="stripe")
app.add_typer(functions.app, name="functions")
app.add_typer(schema.app, name="schema")
app.add_typer(standin.app, name="standin")
app.command("deploy")(deploy.deploy)
app.command("test")(suites.run_suites)
app.command("describe")(describe.describe)
app.command("demo")(demo.demo)
app.command("bench")(bench.bench)
app.command("reconcile")(reconcile.reconcile)
app.command("token")(token.token)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"payguard {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="The Supabase project folder (default: the one holding the current folder); "
            "accepted after the subcommand too.",
            envvar="PAYGUARD_PROJECT_DIR",
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print payguard's version.", callback=show_version, is_eager=True
        ),
    ] = False,
) -> None:
    ctx.obj = State(workdir=workdir)


def main() -> None:
    app()
