"""Where the project lives: its root, its Supabase folder and its local state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from payguard.errors import PayguardError


@dataclass(frozen=True)
class Project:
    """A Supabase project folder: the one holding `supabase/config.toml`."""

    root: Path

    @property
    def supabase_dir(self) -> Path:
        return self.root / "supabase"

    @property
    def migrations_dir(self) -> Path:
        return self.supabase_dir / "migrations"

    @property
    def seed_file(self) -> Path:
        return self.supabase_dir / "seed.sql"

    @property
    def policies_dir(self) -> Path:
        return self.root / "policies"

    @property
    def access_matrix_file(self) -> Path:
        return self.root / "docs" / "access-matrix.md"

    @property
    def state_dir(self) -> Path:
        """Local, git-ignored state: the embedded cluster and its logs."""
        return self.root / ".payguard"

    @property
    def sql_tests_dir(self) -> Path:
        return self.root / "tests" / "sql"

    @property
    def py_tests_dir(self) -> Path:
        return self.root / "tests" / "py"

    @property
    def test_helpers_file(self) -> Path:
        return self.sql_tests_dir / "helpers" / "tests_schema.sql"


def find_project(start: Path | None = None) -> Project:
    """Walk up from `start` (or $PAYGUARD_PROJECT_DIR, or the cwd) to the Supabase project root."""
    env = os.environ.get("PAYGUARD_PROJECT_DIR")
    here = (start or (Path(env) if env else Path.cwd())).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "supabase" / "config.toml").is_file():
            return Project(candidate)
    raise PayguardError(
        f"no Supabase project found at or above {here}; "
        "run payguard from the project folder or pass --workdir"
    )
