"""`payguard token`: a user's access token for the local stack, with the claims Supabase Auth
gives it, signed with the local JWT secret; bad options are refused."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from payguard.cli import app
from payguard.jwt import verify

USER = "00000000-0000-4000-8000-00000000a001"


def test_a_token_carries_the_users_claims_and_verifies_with_the_local_secret():
    result = CliRunner().invoke(app, ["token", "--user", USER, "--aal", "aal2"])
    assert result.exit_code == 0, result.output
    claims = verify(result.output.strip())
    assert (claims["sub"], claims["aud"], claims["role"], claims["aal"]) == (
        USER,
        "authenticated",
        "authenticated",
        "aal2",
    )
    assert [m["method"] for m in claims["amr"]] == ["totp", "password"]
    assert claims["exp"] - claims["iat"] == 3600


def test_claims_staff_role_and_lifetime():
    result = CliRunner().invoke(
        app, ["token", "--user", USER, "--role", "admin", "--lifetime", "60", "--claims"]
    )
    assert result.exit_code == 0, result.output
    claims = json.loads(result.output)
    assert (claims["role"], claims["aal"], claims["exp"] - claims["iat"]) == ("admin", "aal1", 60)


def test_bad_options_are_refused():
    runner = CliRunner()
    for args, message in (
        (["--user", "hana"], "must be a user id"),
        (["--user", USER, "--aal", "aal9"], "--aal must be one of"),
        (["--user", USER, "--role", "service_role"], "--role must be one of"),
        (["--user", USER, "--lifetime", "0"], "--lifetime must be positive"),
    ):
        result = runner.invoke(app, ["token", *args])
        assert result.exit_code == 2, args
        assert message in result.output, (args, result.output)
