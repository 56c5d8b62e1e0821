"""A fresh deploy seals its audit trail with no manual step: where pg_cron is installed (as in
the `postgres` database of the embedded cluster, as on Supabase), the deploy schedules the
sealer, and rows written afterwards are sealed well within the alert threshold.

pg_cron starts a job at the top of a minute, so this waits up to a minute and a few seconds;
it runs in a cluster of its own, whose `postgres` database it may deploy afresh.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.audit.status import seal_status
from payguard.cli import app
from payguard.cluster import Cluster, free_port
from payguard.deploy import deploy
from payguard.project import Project
from payguard.testing.clusters import scratch

runner = CliRunner()


@pytest.fixture(scope="module")
def sealing_cluster(cluster: Cluster, project: Project) -> Iterator[Cluster]:
    """A cluster of its own, its `postgres` database freshly deployed."""
    made = scratch(cluster, "sealer")
    made.start(free_port())
    deploy(made.admin_url(), project)
    yield made
    made.destroy()
    shutil.rmtree(made.base, ignore_errors=True)


def test_rows_written_after_a_fresh_deploy_are_sealed_within_the_threshold(
    sealing_cluster: Cluster,
):
    url = sealing_cluster.url()

    deployed = seal_status(url)
    assert sorted(job.split(":", 1)[0] for job in deployed.scheduled_jobs) == [
        "payguard-audit-seal-check",
        "payguard-audit-sealer",
    ]

    with psycopg.connect(url) as conn:
        jobs = conn.execute("select jobname, schedule from cron.job order by jobname").fetchall()
    assert ("payguard-lapsed-reviews", "*/5 * * * *") in jobs, "lapsed reviews are released too"

    # A sign-up writes an audit row; nothing is sealed by hand from here on.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) "
            "values (%s, 'authenticated', 'authenticated', 'sealed@example.com')",
            (uuid.uuid4(),),
        )
        row = conn.execute("select max(seq) from public.payment_audit_logs").fetchone()
    assert row is not None
    assert row[0] is not None
    written_seq = int(row[0])
    written = time.monotonic()
    waiting = seal_status(url)
    assert waiting.unsealed_rows >= 1

    threshold = waiting.alert_after_seconds
    # `audit status --wait` waits for the scheduled sealer; it seals nothing itself.
    shown = runner.invoke(
        app, ["audit", "status", "--wait", str(threshold), "--json", "--db-url", url]
    )
    took = time.monotonic() - written
    assert shown.exit_code == 0, shown.output
    status = json.loads(shown.output)
    assert status["sealed_in_time"] is True
    assert status["sealed_through"] >= written_seq
    assert status["overdue"] is False
    assert status["last_sealed_at"] is not None
    # A minute at most for pg_cron's next run, then the run's two calls.
    assert took < 75, f"sealed after {took:.0f} s"

    verified = runner.invoke(app, ["audit", "verify", "--db-url", url])
    assert verified.exit_code == 0, verified.output

    with psycopg.connect(url) as conn:
        runs = conn.execute(
            "select j.jobname, d.status from cron.job_run_details as d "
            "join cron.job as j using (jobid) where d.status = 'failed'"
        ).fetchall()
        alerts = conn.execute(
            "select count(*) from public.security_alerts where kind = 'audit_seal_backlog'"
        ).fetchone()
    assert runs == []
    assert alerts == (0,)


def test_status_reports_an_overdue_backlog_and_the_check_raises_an_alert(
    sealing_cluster: Cluster,
):
    """A transaction left open holds sealing back (the sealer waits for every transaction
    older than its fence). With the threshold at 0 s, the row written meanwhile is overdue:
    status says so and exits 1, and the backlog check raises the alert."""
    url = sealing_cluster.url()
    with (
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(url) as holder,
    ):
        conn.execute(
            "update private.settings set value = '0' where key = 'audit_seal_alert_seconds'"
        )
        holder.execute("select pg_current_xact_id()")  # open, with a transaction id
        conn.execute(
            "insert into auth.users (id, aud, role, email) "
            "values (%s, 'authenticated', 'authenticated', 'late@example.com')",
            (uuid.uuid4(),),
        )
        time.sleep(2.5)  # the sealer runs meanwhile, and cannot seal past the open transaction

        shown = runner.invoke(app, ["audit", "status", "--db-url", url])
        assert shown.exit_code == 1, shown.output
        assert "rows not sealed yet" in shown.output or "row not sealed yet" in shown.output
        assert "is the sealer running?" in shown.output
        waited = runner.invoke(app, ["audit", "status", "--wait", "1.5", "--db-url", url])
        assert waited.exit_code == 1, waited.output
        assert "were not sealed within 1.5 s" in waited.output

        conn.execute("select private.check_audit_seal_backlog()")
        alerts = conn.execute(
            "select count(*) from public.security_alerts where kind = 'audit_seal_backlog'"
        ).fetchone()
        assert alerts is not None
        assert alerts[0] >= 1
        holder.rollback()
