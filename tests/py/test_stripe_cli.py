"""`payguard stripe start|stop|status`: localstripe in the background, plain unless a test
extension is asked for, its objects and webhook secret kept under the project's .payguard/."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.local_stripe import API_KEY, TEST_EXTENSION, stripe_client
from payguard.testing.local_stack import http

runner = CliRunner()


@pytest.fixture
def stripe_cli(scratch_project):
    def run(*args: str) -> str:
        result = runner.invoke(app, ["--workdir", str(scratch_project.root), "stripe", *args])
        assert result.exit_code == 0, result.output
        return result.output

    yield run
    runner.invoke(app, ["--workdir", str(scratch_project.root), "stripe", "stop"])


def test_plain_localstripe_starts_keeps_its_objects_and_its_secret_and_stops(
    stripe_cli, scratch_project
):
    started = json.loads(stripe_cli("start", "--json"))
    assert started["running"] is True
    assert started["extension"] is None
    assert started["webhook_secret"].startswith("whsec_")
    assert (scratch_project.state_dir / "stripe" / "webhook-secret").stat().st_mode & 0o077 == 0
    base = started["api_base"]
    # Plain localstripe: no Connect.
    assert http("POST", f"{base}/v1/accounts", {}, token=API_KEY).status == 404
    customer = stripe_client(base).v1.customers.create({"email": "kept@example.test"})
    assert json.loads(stripe_cli("start", "--json"))["pid"] == started["pid"], "started twice"

    assert stripe_cli("stop").strip() == "stopped"
    assert json.loads(stripe_cli("status", "--json"))["running"] is False
    assert stripe_cli("stop").strip() == "not running"

    again = json.loads(stripe_cli("start", "--json"))
    assert again["webhook_secret"] == started["webhook_secret"]
    kept = stripe_client(again["api_base"]).v1.customers.retrieve(customer.id)
    assert kept.email == "kept@example.test"
    stripe_cli("stop")
    fresh = json.loads(stripe_cli("start", "--fresh", "--json"))
    assert (
        http("GET", f"{fresh['api_base']}/v1/customers/{customer.id}", token=API_KEY).status == 404
    )


def test_the_test_extension_is_loaded_only_when_asked_for(stripe_cli, project, scratch_project):
    extension = project.root / TEST_EXTENSION
    started = json.loads(stripe_cli("start", "--extension", str(extension), "--json"))
    assert started["extension"] == str(extension)
    answer = http("POST", f"{started['api_base']}/v1/accounts", {"type": "custom"}, token=API_KEY)
    assert answer.status == 200, answer.body
    assert answer.body["id"].startswith("acct_")
    text = stripe_cli("status")
    assert f"extension       {extension}" in text
    assert started["webhook_secret"] in text
    # Asking for plain localstripe while the extended one runs is an error, not a silent no-op.
    result = runner.invoke(app, ["--workdir", str(scratch_project.root), "stripe", "start"])
    assert result.exit_code == 1
    assert "already runs" in result.output


def test_a_restart_takes_the_same_port_and_fresh_is_refused_while_running(
    stripe_cli, scratch_project
):
    started = json.loads(stripe_cli("start", "--json"))
    result = runner.invoke(
        app, ["--workdir", str(scratch_project.root), "stripe", "start", "--fresh"]
    )
    assert result.exit_code == 1
    assert "stop it first" in result.output
    stripe_cli("stop")
    assert json.loads(stripe_cli("start", "--json"))["port"] == started["port"]


def test_an_extension_that_fails_to_load_is_a_clear_error(scratch_project, tmp_path):
    broken = tmp_path / "broken_extension.py"
    broken.write_text("def install(app):\n    raise RuntimeError('this extension is broken')\n")
    result = runner.invoke(
        app, ["--workdir", str(scratch_project.root), "stripe", "start", "--extension", str(broken)]
    )
    assert result.exit_code == 1
    assert "localstripe exited with code 1" in result.output
    assert "this extension is broken" in result.output
    status = runner.invoke(
        app, ["--workdir", str(scratch_project.root), "stripe", "status", "--json"]
    )
    assert json.loads(status.output)["running"] is False
