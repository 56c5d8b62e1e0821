"""`payguard token`: an access token for local development, signed as Supabase Auth signs
them locally."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from payguard.errors import UsageError
from payguard.jwt import sign
from payguard.testing.request import AAL_LEVELS, user_claims

STAFF_ROLES = ("authenticated", "admin", "auditor")


def token(
    user: Annotated[str, typer.Option("--user", help="The user's id (auth.users.id).")],
    aal: Annotated[str, typer.Option(help="Assurance level: aal1, or aal2 after MFA.")] = "aal1",
    role: Annotated[
        str, typer.Option(help="The token's role: authenticated, or admin/auditor for staff.")
    ] = "authenticated",
    lifetime: Annotated[int, typer.Option(help="Seconds until it expires.")] = 3600,
    claims: Annotated[
        bool, typer.Option("--claims", help="Print the claims (JSON) instead of the token.")
    ] = False,
) -> None:
    """Print a user's access token (HS256, signed with $SUPABASE_JWT_SECRET or the local
    default), with the claims Supabase Auth gives it; aal2 carries a fresh MFA step-up. For
    the local stack only: it signs whatever it is asked to."""
    try:
        subject = uuid.UUID(user)
    except ValueError as exc:
        raise UsageError(f"--user must be a user id (a UUID), not {user!r}") from exc
    if aal not in AAL_LEVELS:
        raise UsageError(f"--aal must be one of {', '.join(AAL_LEVELS)}")
    if role not in STAFF_ROLES:
        raise UsageError(f"--role must be one of {', '.join(STAFF_ROLES)}")
    if lifetime <= 0:
        raise UsageError("--lifetime must be positive")
    payload = {**user_claims(subject, aal=aal), "role": role}
    payload["exp"] = payload["iat"] + lifetime
    typer.echo(json.dumps(payload, sort_keys=True) if claims else sign(payload))
