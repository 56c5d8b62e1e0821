"""`payguard db diff`: no diff tool reproduced the schema exactly, so it writes nothing and
says how a change is made instead."""

from __future__ import annotations

from typer.testing import CliRunner

from payguard.cli import app
from payguard.project import Project


def test_db_diff_writes_no_migration_and_points_at_the_hand_written_path(
    scratch_project: Project, project: Project
) -> None:
    before = sorted(scratch_project.migrations_dir.iterdir())
    result = CliRunner().invoke(
        app, ["--workdir", str(scratch_project.root), "db", "diff", "-f", "add_a_column"]
    )
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "docs/schema-changes.md" in message
    assert "payguard schema check" in message
    assert sorted(scratch_project.migrations_dir.iterdir()) == before
    # The document it names holds the evaluation: no tool was exact.
    doc = (project.root / "docs" / "schema-changes.md").read_text()
    assert "| **exact?** | no | no | no |" in doc
