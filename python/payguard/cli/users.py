"""`payguard users …`: erase a user's personal data (payguard.users)."""

from __future__ import annotations

from typing import Annotated

import typer

from payguard.cli.common import DbUrl, Json, deployed_url, out, print_json
from payguard.users import erase as erase_user
from payguard.users import parse_user_id

app = typer.Typer(help="Users: erase one's personal data.", no_args_is_help=True)


@app.command()
def erase(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(metavar="USER_ID", help="The user's id (a UUID).")],
    reason: Annotated[
        str,
        typer.Option(
            help="Why (10 to 2000 characters, recorded in the audit trail for ten years: "
            "name the request, never the person)."
        ),
    ],
    db_url: DbUrl = None,
    as_json: Json = False,
) -> None:
    """Erase a user's personal data (profile, auth account, method nicknames; the account
    banned, the audit fingerprint key shredded), keeping their payments, ledger and audit
    trail whole. Refused, with nothing changed, while the user has open money. Run it as the
    database owner."""
    subject = parse_user_id(user_id)
    summary = erase_user(deployed_url(ctx, db_url), subject, reason)
    if as_json:
        print_json(summary)
        return
    auth_rows = summary.get("auth_rows_deleted") or {}
    deleted = ", ".join(f"{table} {n}" for table, n in auth_rows.items()) or "none"
    out.print(
        f"erased user {summary['user_id']} at {summary['erased_at']}: profile and auth account "
        f"pseudonymized, account banned, audit fingerprint key shredded; "
        f"{summary['payment_methods']} payment and {summary['payout_methods']} payout methods "
        f"cleared, {summary['notifications_deleted']} notifications deleted, auth rows "
        f"deleted: {deleted}",
        markup=False,
    )
