"""The `payguard` command. Commands are thin: they parse options, call the library and print.

The root command's class (payguard.cli.common.PayguardGroup) is the boundary of every
command: an error becomes one line on stderr and an exit code (payguard.errors.ExitCode).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from payguard import __version__
from payguard.cli.common import PayguardGroup, State

# Each command and the attribute of its module that holds it: a Typer (a group of commands)
# or a function (one command). A module is imported only when its command runs, or when the
# root's help lists them all, so that a command pays only for what it imports itself (the
# Stripe SDK alone takes longer to import than most commands take to run).
COMMANDS: dict[str, str] = {
    "deploy": "payguard.cli.deploy:deploy",
    "test": "payguard.cli.suites:run_suites",
    "describe": "payguard.cli.describe:describe",
    "demo": "payguard.cli.demo:demo",
    "bench": "payguard.cli.bench:bench",
    "reconcile": "payguard.cli.reconcile:reconcile",
    "token": "payguard.cli.token:token",
    "keys": "payguard.cli.keys:app",
    "db": "payguard.cli.db:app",
    "policies": "payguard.cli.policies:app",
    "audit": "payguard.cli.audit:app",
    "users": "payguard.cli.users:app",
    "retention": "payguard.cli.retention:app",
    "stripe": "payguard.cli.stripe:app",
    "functions": "payguard.cli.functions:app",
    "schema": "payguard.cli.schema:app",
    "standin": "payguard.cli.standin:app",
}


class RootGroup(PayguardGroup):
    commands_by_module = COMMANDS


app = typer.Typer(
    name="payguard",
    cls=RootGroup,
    help="Deploy, check and test payguard, the payment-security layer of InstaBids.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
