"""What the commands share: the project they act on, the error boundary, the consoles."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from payguard.cluster import Cluster
from payguard.db import Target, resolve_url
from payguard.errors import PayguardError
from payguard.project import Project, find_project

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class State:
    workdir: Path | None

    def project(self) -> Project:
        return find_project(self.workdir)


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State(workdir=None)


def boundary(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a PayguardError into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PayguardError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True)
            raise typer.Exit(code=1) from None

    return wrapper


def target(project: Project, db_url: str | None) -> Target:
    """The database a command acts on: --db-url, $DATABASE_URL, or the embedded cluster
    (started if needed, reached as its superuser)."""
    url = resolve_url(db_url)
    if url is not None:
        return Target(url=url, embedded=False)
    cluster = Cluster.for_project(project)
    cluster.start()
    return Target(url=cluster.admin_url(), embedded=True)


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))
