"""The schema files that config.toml lists under `[db.migrations] schema_paths`, in order.

As the Supabase CLI reads them: each entry is a path or glob relative to supabase/; a glob
expands to its matches in sorted order; a file listed twice is taken at its first place. Without
`schema_paths`, every supabase/schemas/*.sql is taken, in name order. A file's domain is its
stem (supabase/schemas/ledger.sql holds the domain `ledger`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from payguard.errors import PayguardError
from payguard.migrations import LEADING_COMMENTS, ROLE_CHANGE, TRANSACTION_CONTROL, read_sql
from payguard.project import Project
from payguard.sql_split import Statement, split_statements

DEFAULT_SCHEMA_PATHS = ("./schemas/*.sql",)


@dataclass(frozen=True)
class SchemaFile:
    """One schema file: its path, its name relative to the project, and its statements."""

    path: Path
    name: str
    statements: list[Statement]

    @property
    def domain(self) -> str:
        return self.path.stem

    def forbidden_statements(self) -> list[tuple[Statement, str]]:
        """Statements a schema file may not hold (they would break the one transaction that
        applies every file as postgres), each with the reason."""
        found: list[tuple[Statement, str]] = []
        for statement in self.statements:
            text = LEADING_COMMENTS.sub("", statement.text, count=1)
            if TRANSACTION_CONTROL.match(text):
                found.append((statement, "the schema files are applied in one transaction"))
            elif ROLE_CHANGE.match(text):
                found.append((statement, "schema files run as postgres and may not change role"))
        return found


def schema_paths(project: Project) -> list[str]:
    """The `[db.migrations] schema_paths` entries of config.toml, or the CLI's default."""
    config_file = project.supabase_dir / "config.toml"
    try:
        config = tomllib.loads(config_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PayguardError(f"cannot read {config_file}: {exc}") from None
    paths = config.get("db", {}).get("migrations", {}).get("schema_paths")
    if paths is None:
        return list(DEFAULT_SCHEMA_PATHS)
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise PayguardError(
            f"{config_file}: db.migrations.schema_paths must be a list of paths (strings)"
        )
    return list(paths)


def schema_file_paths(project: Project, *, required: bool = True) -> list[Path]:
    """The schema files, in the order they apply. A listed path that matches no file is an
    error, as is an empty list; with `required=False`, a project that lists no schema paths
    and has no supabase/schemas/*.sql has none."""
    entries = schema_paths(project)
    if not required and entries == list(DEFAULT_SCHEMA_PATHS):
        pattern = DEFAULT_SCHEMA_PATHS[0].removeprefix("./")
        if not any(p.is_file() for p in project.supabase_dir.glob(pattern)):
            return []
    found: list[Path] = []
    for entry in entries:
        pattern = entry.removeprefix("./")
        if Path(pattern).is_absolute():
            raise PayguardError(
                f"schema path {entry!r} in config.toml must be relative to supabase/"
            )
        matches = sorted(p for p in project.supabase_dir.glob(pattern) if p.is_file())
        if not matches and entries == list(DEFAULT_SCHEMA_PATHS):
            raise PayguardError(
                "no schema files: supabase/config.toml lists none (db.migrations.schema_paths) "
                "and supabase/schemas/ holds no .sql file"
            )
        if not matches:
            raise PayguardError(
                f"schema path {entry!r} (db.migrations.schema_paths in supabase/config.toml, "
                "relative to supabase/) matches no file; create the file or fix the entry"
            )
        for path in matches:
            if path not in found:
                found.append(path)
    if not found:
        raise PayguardError(
            "no schema files: list them in supabase/config.toml as db.migrations.schema_paths"
        )
    return found


def load_schema_files(project: Project, *, required: bool = True) -> list[SchemaFile]:
    """Every schema file, in order, split into statements as the migrations are."""
    return [
        SchemaFile(
            path=path,
            name=path.relative_to(project.root).as_posix(),
            statements=split_statements(read_sql(path)),
        )
        for path in schema_file_paths(project, required=required)
    ]
