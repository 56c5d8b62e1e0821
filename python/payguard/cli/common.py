"""What the commands share. A new command plugs into these and needs nothing else:

- the boundary: `PayguardGroup`, the root command's class, runs every command. It imports a
  command's module only when that command runs (`commands_by_module`). It turns a
  PayguardError into one line on stderr (`error: ...`) and its class's exit code (see
  payguard.errors.ExitCode), a psycopg error into one line with its SQLSTATE and exit 3, a
  usage error into one line and exit 2, anything else into `internal error: ...` and exit 70
  (with the traceback when PAYGUARD_DEBUG=1). Under `--json` the error is JSON on stderr:
  {"error": {"code": 3, "message": "..."}}. Commands need no decorator;
- the global options: `--workdir` is accepted before or after the subcommand;
- the options: `Json` (`--json`) for every command that reports, `DbUrl` (`--db-url`);
- the connection helper: `target(project, db_url)` resolves --db-url / $DATABASE_URL / the
  embedded cluster, checks that it answers (and, with deployed=True, that payguard is
  deployed there), and returns the URL that the library then connects to with
  payguard.db.connect;
- the output: `out` and `err` (rich consoles) and `print_json`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer import _click
from typer._click.exceptions import ClickException
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup

from payguard.errors import DatabaseError, ExitCode, PayguardError
from payguard.project import Project, find_project

if TYPE_CHECKING:
    import psycopg

    from payguard.db import Target

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DEBUG_ENV = "PAYGUARD_DEBUG"
# Options of the root command that may also be given after the subcommand, as the Supabase
# CLI's global flags may.
GLOBAL_OPTIONS = ("--workdir",)

Json = Annotated[
    bool,
    typer.Option("--json", help="Print JSON for machines (errors too, as JSON on stderr)."),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        help="Read the keys from this file instead of the environment.", show_default=False
    ),
]
DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        help="Target database (default: $DATABASE_URL, else the embedded cluster).",
        show_default=False,
    ),
]


@dataclass
class State:
    workdir: Path | None

    def project(self) -> Project:
        return find_project(self.workdir)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State(workdir=None)


def target(project: Project, db_url: str | None, *, deployed: bool = False) -> Target:
    """The database a command acts on: --db-url, $DATABASE_URL, or the embedded cluster
    (started if needed, reached as its superuser). It must answer; with `deployed`, it must
    hold payguard's migrations. Every failure is a one-line error that says what to do."""
    from payguard.cluster import Cluster
    from payguard.db import Target, check_url, connect, require_deployed, resolve_url

    url = resolve_url(db_url)
    if url is not None:
        source = "--db-url" if db_url else "$DATABASE_URL"
        where = Target(url=check_url(url, source=source), embedded=False)
        hint = f"check {source} and that the server runs and accepts connections"
    else:
        cluster = Cluster.for_project(project)
        try:
            cluster.start()
        except PayguardError as exc:
            raise DatabaseError(f"the embedded database did not start: {exc}") from None
        where = Target(url=cluster.admin_url(), embedded=True)
        hint = "start the embedded database with `payguard db start` (see `payguard db logs`)"
    with connect(where.url, hint=hint) as conn:
        if deployed:
            require_deployed(conn, where.url)
    return where


def deployed_url(ctx: typer.Context, db_url: str | None) -> str:
    """The URL of the deployed database a command acts on (--db-url, else the embedded one)."""
    return target(state(ctx).project(), db_url, deployed=True).url


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def hoist_global_options(args: Sequence[str]) -> list[str]:
    """Move the global options (and their values) to the front, so that they may follow the
    subcommand: `payguard db status --workdir X` is `payguard --workdir X db status`."""
    rest = list(args)
    front: list[str] = []
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg == "--":
            break
        if arg in GLOBAL_OPTIONS and index + 1 < len(rest):
            front += rest[index : index + 2]
            del rest[index : index + 2]
            continue
        if arg.split("=", 1)[0] in GLOBAL_OPTIONS and "=" in arg:
            front.append(rest.pop(index))
            continue
        index += 1
    return front + rest


def wants_json(args: Sequence[str]) -> bool:
    return "--json" in list(args)[: list(args).index("--")] if "--" in args else "--json" in args


class PayguardGroup(TyperGroup):
    """The root command: the error boundary of every command, and the global options.

    `commands_by_module` names each command's "module:attribute" (a Typer or a function),
    imported when the command is first looked up: running one command imports only its own
    module, and the root's help, which looks up every command, imports them all."""

    commands_by_module: ClassVar[Mapping[str, str]] = {}

    def list_commands(self, ctx: _click.Context) -> list[str]:
        loaded = super().list_commands(ctx)
        return [*loaded, *(name for name in self.commands_by_module if name not in loaded)]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        command = super().get_command(ctx, cmd_name)
        where = self.commands_by_module.get(cmd_name)
        if command is None and where is not None:
            command = load_command(cmd_name, where)
            self.add_command(command, cmd_name)
        return command

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        # An unknown name is answered with the closest known ones: load them all first.
        if args and self.get_command(ctx, args[0]) is None:
            for name in self.commands_by_module:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        argv = hoist_global_options(sys.argv[1:] if args is None else args)
        as_json = wants_json(argv)
        try:
            result = super().main(
                argv,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.Exit as exc:
            result = exc.exit_code
        except ClickException as exc:  # typer's own click: usage errors, bad values
            fail(usage_message(exc), exc.exit_code, as_json)
        except typer.Abort:
            fail("aborted", ExitCode.FINDING, as_json)
        except PayguardError as exc:
            fail(str(exc), exc.exit_code, as_json)
        except Exception as exc:
            if (database_error := as_database_error(exc)) is not None:
                fail(database_message(database_error), ExitCode.DATABASE, as_json)
            if os.environ.get(DEBUG_ENV):
                traceback.print_exc()
            fail(
                f"internal error: {type(exc).__name__}: {one_line(str(exc))}; rerun with "
                f"{DEBUG_ENV}=1 to see the traceback, and report it",
                ExitCode.INTERNAL,
                as_json,
            )
        code = result if isinstance(result, int) else ExitCode.OK
        if not standalone_mode:
            return code
        sys.exit(code)


def load_command(name: str, where: str) -> _click.Command:
    """The click command for "module:attribute", built as typer builds a registered one."""
    module, attribute = where.split(":")
    command = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(command, typer.Typer):
        holder.add_typer(command, name=name)
    else:
        holder.command(name)(command)
    return typer.main.get_group(holder).commands[name]


def as_database_error(exc: BaseException) -> psycopg.Error | None:
    """`exc` if it is a psycopg error. psycopg is looked up, not imported: only a command
    that connects can raise one, and such a command has imported it."""
    if "psycopg" not in sys.modules:
        return None
    import psycopg

    return exc if isinstance(exc, psycopg.Error) else None


def usage_message(exc: ClickException) -> str:
    message = one_line(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, ClickUsageError) and ctx is not None:
        return f"{message} (see `{ctx.command_path} --help`)"
    return message


def database_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = one_line((diag.message_primary or str(exc)) or type(exc).__name__)
    if diag.message_hint:
        message += f" ({one_line(diag.message_hint)})"
    return f"database error: SQLSTATE {exc.sqlstate or '?'}: {message}"


def one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def fail(message: str, code: int, as_json: bool) -> NoReturn:
    """Print one error line on stderr (JSON with --json) and exit with `code`."""
    if as_json:
        typer.echo(json.dumps({"error": {"code": int(code), "message": message}}), err=True)
    else:
        err.print(Text.assemble(("error:", "bold red"), " ", message))
    raise SystemExit(int(code))
