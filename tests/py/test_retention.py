"""payguard retention purge: removes nothing on a fresh deploy, says so, and audits the run;
what it removes is tested in tests/sql/retention/."""

from __future__ import annotations

import json

import psycopg
from typer.testing import CliRunner

from payguard.cli import app


def test_a_fresh_deploy_has_nothing_to_purge(cluster, fresh_database):
    url = cluster.admin_url(fresh_database)
    runner = CliRunner()
    result = runner.invoke(app, ["retention", "purge", "--db-url", url])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("nothing to purge: no record closed before ")
    as_json = runner.invoke(app, ["retention", "purge", "--db-url", url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    summary = json.loads(as_json.stdout)
    assert set(summary) == {"older_than", "removed"}
    assert set(summary["removed"].values()) == {0}
    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "select count(*) from public.payment_audit_logs "
            "where operation = 'PURGE' and entity_type = 'closed_records'"
        ).fetchone()
    assert runs == (2,)
