"""`payguard deploy`: apply the pending migrations, as the Supabase CLI would, and refuse to
build on a history that no longer matches the files.

Order of work:
1. take an advisory lock, so two deploys never interleave;
2. plan: compare the history table with the files, and refuse, before anything is applied, an
   applied migration whose file was edited or deleted, or a new one older than the newest
   applied one;
3. refuse a cluster where a role payguard creates (admin, auditor, payment_service,
   escrow_service) already exists with other attributes or memberships than payguard gives it;
4. install the Supabase stand-in where the database has no `auth` schema;
5. apply each pending migration in its own transaction, as `postgres`, and record it;
6. optionally run the seed file, once per content, as the CLI's `--include-seed` does.
"""

from __future__ import annotations

import hashlib
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from payguard.db import Connection, connect, is_superuser
from payguard.errors import DatabaseError, PayguardError
from payguard.migrations import (
    AppliedMigration,
    MigrationFile,
    ensure_history_table,
    ensure_seed_table,
    load_migrations,
    read_history,
    read_sql,
    record_applied,
    record_seed,
    seed_hash,
)
from payguard.project import Project
from payguard.roles import check_roles, take_cluster_roles
from payguard.sql_split import Statement, split_statements
from payguard.standin import apply_standin, needs_standin

MIGRATION_ROLE = "postgres"
DEPLOY_LOCK_KEY = 0x70617967  # "payg": one deploy at a time per database


@dataclass
class Step:
    """One line of a deploy's report."""

    kind: str  # "standin" | "migration" | "seed"
    name: str
    status: str  # "applied" | "pending" | "skipped" | "recorded" (a changed seed, not re-run)
    ms: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "status": self.status, "ms": self.ms}


@dataclass
class DeployReport:
    dry_run: bool
    already_applied: int = 0
    steps: list[Step] = field(default_factory=list)

    @property
    def applied(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "migration" and s.status == "applied"]

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "already_applied": self.already_applied,
            "steps": [s.as_dict() for s in self.steps],
        }


class MigrationError(DatabaseError):
    """A migration raised an error; its transaction was rolled back."""


def deploy(
    url: str,
    project: Project,
    *,
    seed: bool = False,
    dry_run: bool = False,
    on_step: Callable[[Step], None] | None = None,
) -> DeployReport:
    report = DeployReport(dry_run=dry_run)

    def emit(step: Step) -> None:
        report.steps.append(step)
        if on_step is not None:
            on_step(step)

    migrations = load_migrations(project.migrations_dir)
    seeds = seed_files(project) if seed else []
    with connect(url) as conn, _deploy_lock(conn):
        try:
            history = read_history(conn)
            pending = plan(history, migrations)
            report.already_applied = len(history)
            check_roles(conn)

            if needs_standin(conn):
                if dry_run:
                    emit(Step("standin", "supabase stand-in", "pending"))
                else:
                    started = time.perf_counter()
                    apply_standin(conn)
                    emit(Step("standin", "supabase stand-in", "applied", _ms_since(started)))
            run_as = _migration_role(conn)

            for migration in pending:
                if dry_run:
                    emit(Step("migration", migration.file_name, "pending"))
                    continue
                started = time.perf_counter()
                _apply_migration(conn, migration, run_as)
                emit(Step("migration", migration.file_name, "applied", _ms_since(started)))

            for path in seeds:
                emit(_seed(conn, project, path, run_as, dry_run))
        except psycopg.Error as exc:
            raise DatabaseError(f"deploy failed: {_describe(exc)}") from None
    return report


def plan(history: list[AppliedMigration], migrations: list[MigrationFile]) -> list[MigrationFile]:
    """The migrations to apply, in order; raises if the history and the files disagree."""
    files = {m.version: m for m in migrations}
    oldest = min(files, default="")
    # A database of the history before a squash: none of its migrations is a file any more,
    # and all of them are older than the baseline. (One whose history holds some of the files
    # lost others: that is a deletion, reported below.)
    squashed = [a for a in history if a.version < oldest]
    if history and len(squashed) == len(history):
        raise PayguardError(
            f"refusing to deploy, nothing was applied: this database was deployed from the "
            f"migration history before the baseline ({len(squashed)} applied migrations, from "
            f"{squashed[0].version} to {squashed[-1].version}, were squashed into the baseline "
            f"migrations from {oldest} on). It cannot be upgraded in place: dump its data, "
            "recreate the database, deploy the baseline and restore the data, as "
            "docs/schema-changes.md (Databases deployed before the baseline) describes"
        )
    problems: list[str] = []
    for applied in history:
        local = files.get(applied.version)
        if local is None:
            problems.append(
                f"migration {applied.version}_{applied.name}.sql was applied but its file is "
                "gone; restore it (a landed migration is never deleted)"
            )
        elif applied.statements is not None and applied.statements != local.texts:
            change = _diff(applied, local)
            problems.append(f"{local.file_name} was edited after it was applied: {change}")
    newest = max((a.version for a in history), default="")
    applied_versions = {a.version for a in history}
    pending = [m for m in migrations if m.version not in applied_versions]
    for migration in pending:
        for statement, reason in migration.forbidden_statements():
            problems.append(f"{migration.file_name}:{statement.line}: {reason}; remove it")
        if migration.version < newest:
            problems.append(
                f"{migration.file_name} is older than the newest applied migration ({newest}); "
                "give it a timestamp after that one"
            )
    if problems:
        detail = "\n".join(f"  - {p}" for p in problems)
        raise PayguardError(
            "refusing to deploy, nothing was applied (a landed migration is never edited or "
            "deleted: add a new one instead):\n" + detail
        )
    return pending


def _diff(applied: AppliedMigration, local: MigrationFile) -> str:
    stored = applied.statements or []
    for index, (old, new) in enumerate(zip(stored, local.statements, strict=False)):
        if old != new.text:
            return f"statement {index + 1} (line {new.line}) differs from the applied one"
    if len(stored) < len(local.statements):
        extra = local.statements[len(stored)]
        return f"statement {len(stored) + 1} (line {extra.line}) was added"
    return f"it has {len(local.statements)} statements where {len(stored)} were applied"


def _migration_role(conn: Connection) -> str | None:
    """Run migrations as `postgres` when connected as another, superuser, role (as the
    Supabase CLI does when connected as `supabase_admin`). The session authorization is
    switched, not just the role, so that a `reset role` stays `postgres`."""
    row = conn.execute(
        "select current_user <> %s and exists (select from pg_roles where rolname = %s)",
        (MIGRATION_ROLE, MIGRATION_ROLE),
    ).fetchone()
    if row and row[0] and is_superuser(conn):
        return MIGRATION_ROLE
    return None


def _apply_migration(conn: Connection, migration: MigrationFile, run_as: str | None) -> None:
    with conn.transaction():
        take_cluster_roles(conn)
        _become(conn, run_as)
        ensure_history_table(conn)
        _run_statements(conn, migration.file_name, migration.statements)
        record_applied(conn, migration)


def _become(conn: Connection, role: str | None) -> None:
    if role is not None:
        conn.execute(sql.SQL("set local session authorization {}").format(sql.Identifier(role)))


def _run_statements(conn: Connection, file_name: str, statements: list[Statement]) -> None:
    for statement in statements:
        try:
            conn.execute(statement.text)
        except psycopg.Error as exc:
            raise _failure(file_name, statement, exc) from None


def _failure(file_name: str, statement: Statement, exc: psycopg.Error) -> MigrationError:
    position = int(exc.diag.statement_position or 0)
    line = statement.line_of(position)
    return MigrationError(
        f"{file_name}:{line}: {_describe(exc)}; the migration was rolled back "
        "and nothing after it was applied"
    )


def _describe(exc: psycopg.Error) -> str:
    message = (exc.diag.message_primary or str(exc)).strip()
    return f"{message} (SQLSTATE {exc.sqlstate or '?'})"


def seed_files(project: Project) -> list[Path]:
    """The seed files that config.toml's [db.seed] names (globs relative to supabase/), in
    order; none when seeding is disabled there."""
    config = tomllib.loads((project.supabase_dir / "config.toml").read_text())
    seed_config = config.get("db", {}).get("seed", {})
    if not seed_config.get("enabled", True):
        return []
    found: list[Path] = []
    for pattern in seed_config.get("sql_paths", ["./seed.sql"]):
        for path in sorted(project.supabase_dir.glob(str(pattern).removeprefix("./"))):
            if path.is_file() and path not in found:
                found.append(path)
    return found


def _seed(
    conn: Connection, project: Project, path: Path, run_as: str | None, dry_run: bool
) -> Step:
    """Run a seed file once, as the Supabase CLI does: a file seen before with other content
    only has its recorded hash updated; it is not run again."""
    name = path.relative_to(project.root).as_posix()
    text = read_sql(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    recorded = seed_hash(conn, name)
    if recorded == digest:
        return Step("seed", name, "skipped")
    if dry_run:
        return Step("seed", name, "pending")
    started = time.perf_counter()
    with conn.transaction():
        _become(conn, run_as)
        ensure_seed_table(conn)
        if recorded is None:
            _run_statements(conn, name, split_statements(text))
        record_seed(conn, name, digest)
    status = "applied" if recorded is None else "recorded"
    return Step("seed", name, status, _ms_since(started))


@contextmanager
def _deploy_lock(conn: Connection) -> Iterator[None]:
    row = conn.execute("select pg_try_advisory_lock(%s)", (DEPLOY_LOCK_KEY,)).fetchone()
    if not (row and row[0]):
        raise DatabaseError(
            "another payguard deploy is running against this database; wait for it to finish, "
            "then run this one again"
        )
    try:
        yield
    finally:
        conn.execute("select pg_advisory_unlock(%s)", (DEPLOY_LOCK_KEY,))


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
