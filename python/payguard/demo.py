"""`payguard demo`: the seeded users at work, and attacks being refused.

Every request goes through the same path as an app client's: logged in as `authenticator`,
with the JWT's role and claims set for one transaction, as PostgREST does. The scenario runs
on a database of its own (payguard_demo), deployed and seeded afresh each time, where Dora
signs up too. Each step says what it expects; a step that does not behave as expected fails
the demo. It ends with Dora's personal data erased, then the audit chain sealed and verified
and the books reconciled, as the database owner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from payguard.audit.chain import verify
from payguard.audit.sealer import seal_now
from payguard.cluster import APP_ROLE, Cluster
from payguard.project import Project
from payguard.reconcile import reconcile
from payguard.reset import reset
from payguard.testing.client import AppClient

DEMO_DATABASE = "payguard_demo"
HANA = "00000000-0000-4000-8000-00000000a001"
CARL = "00000000-0000-4000-8000-00000000c001"
ADA = "00000000-0000-4000-8000-00000000ad01"
ALDO = "00000000-0000-4000-8000-00000000a0d1"
DORA = "00000000-0000-4000-8000-00000000d001"
MILESTONE_1 = "00000000-0000-4000-8000-0000000c0001"


@dataclass(frozen=True)
class Step:
    actor: str
    action: str
    allowed: bool
    run: Callable[[AppClient], str]


@dataclass(frozen=True)
class Outcome:
    step: Step
    allowed: bool
    detail: str

    @property
    def as_expected(self) -> bool:
        return self.allowed == self.step.allowed


def run_demo(project: Project, on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    cluster = Cluster.for_project(project)
    reset(project, database=DEMO_DATABASE, seed=True)
    owner_url = cluster.admin_url(DEMO_DATABASE)
    sign_up_dora(owner_url)
    client = AppClient(cluster.socket_url("authenticator", DEMO_DATABASE), reproduce_failures=False)
    outcomes = []
    for step in scenario(owner_url):
        try:
            outcome = Outcome(step, True, step.run(client))
        except psycopg.Error as exc:
            message = (exc.diag.message_primary or str(exc)).strip()
            outcome = Outcome(step, False, f"{exc.sqlstate}: {message}")
        except RefusedError as exc:
            outcome = Outcome(step, False, str(exc))
        outcomes.append(outcome)
        on_outcome(outcome)
    return outcomes


class RefusedError(Exception):
    """A request that raised nothing but touched no row: RLS hid it (or a check as the owner
    found something)."""


def sign_up_dora(owner_url: str) -> None:
    """Dora signs up, as the auth server records a sign-up: a homeowner with no money yet."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f"set role {APP_ROLE}")
        conn.execute(
            "insert into auth.users (id, aud, role, email, email_confirmed_at, "
            "raw_app_meta_data, raw_user_meta_data) values (%s, 'authenticated', "
            "'authenticated', 'dora.doe@example.com', now(), '{\"provider\": \"email\"}', "
            '\'{"full_name": "Dora Doe", "role": "homeowner"}\')',
            (DORA,),
        )


def _audit_verified(owner_url: str) -> Callable[[AppClient], str]:
    def run(client: AppClient) -> str:
        seal_now(owner_url)
        verdict = verify(owner_url)
        if not verdict.ok:
            raise RefusedError(f"first bad seq {verdict.first_bad}: {verdict.reason}")
        return f"verified: {verdict.checked} rows, sealed through seq {verdict.sealed_through}"

    return run


def _reconciled(owner_url: str) -> Callable[[AppClient], str]:
    def run(client: AppClient) -> str:
        differences = reconcile(owner_url)
        if differences:
            raise RefusedError(f"{len(differences)} difference(s): {differences[0].check}")
        return "reconciled: no difference"

    return run


def _rows(query: str, *params: Any, **user: Any) -> Callable[[AppClient], str]:
    def run(client: AppClient) -> str:
        with _as(client, **user) as req:
            rows = req.fetchall(query, params or None)
        return f"{len(rows)} row(s): " + "; ".join(", ".join(str(v) for v in r) for r in rows[:4])

    return run


def _changes(query: str, *params: Any, **user: Any) -> Callable[[AppClient], str]:
    def run(client: AppClient) -> str:
        with _as(client, **user) as req:
            rows = req.fetchall(query, params or None)
        if not rows:
            raise RefusedError("no row changed (row-level security hid it)")
        return ", ".join(str(v) for v in rows[0])

    return run


def _as(client: AppClient, **user: Any) -> Any:
    if "service" in user:
        return client.as_service(user["service"])
    if user.get("anon"):
        return client.as_anon()
    return client.as_user(
        user["uid"], aal=user.get("aal", "aal1"), role=user.get("role", "authenticated")
    )


def scenario(owner_url: str) -> list[Step]:
    hana = {"uid": HANA}
    hana_mfa = {"uid": HANA, "aal": "aal2"}
    carl = {"uid": CARL}
    return [
        Step(
            "Hana (homeowner)",
            "lists her projects",
            True,
            _rows("select title, status from public.projects", **hana),
        ),
        Step(
            "Hana (homeowner)",
            "lists her saved payment methods",
            True,
            _rows("select brand, last4, nickname from public.payment_methods", **hana),
        ),
        Step(
            "Carl (contractor)",
            "sees the project's milestones",
            True,
            _rows(
                "select position, title, amount_minor, currency from public.project_milestones "
                "order by position",
                **carl,
            ),
        ),
        Step(
            "Carl (contractor)",
            "tries to read Hana's payment methods",
            False,
            _changes("select id from public.payment_methods", **carl),
        ),
        Step(
            "anon",
            "tries to list payment methods without signing in",
            False,
            _rows("select * from public.payment_methods", anon=True),
        ),
        Step(
            "Hana (homeowner, password only)",
            "tries to pay milestone 1 ($2,500.00) without MFA",
            False,
            _changes(
                "insert into public.milestone_payments (milestone_id) values (%s) returning id",
                MILESTONE_1,
                **hana,
            ),
        ),
        Step(
            "Hana (homeowner, with MFA)",
            "pays milestone 1 into escrow (names only the milestone)",
            True,
            _changes(
                "insert into public.milestone_payments (milestone_id) values (%s) "
                "returning payee_id, amount_minor, currency, status",
                MILESTONE_1,
                **hana_mfa,
            ),
        ),
        Step(
            "Hana (homeowner)",
            "tries to pay milestone 2 to herself, at her own price",
            False,
            _changes(
                "insert into public.milestone_payments (milestone_id, payee_id, amount_minor) "
                "values ('00000000-0000-4000-8000-0000000c0002', %s, 1) returning id",
                HANA,
                **hana,
            ),
        ),
        Step(
            "Carl (contractor)",
            "tries to release the payment to himself",
            False,
            _changes(
                "update public.milestone_payments set status = 'released' "
                "where milestone_id = %s returning status",
                MILESTONE_1,
                **carl,
            ),
        ),
        Step(
            "Hana (homeowner)",
            "tries to mark her own payment funded",
            False,
            _changes(
                "update public.milestone_payments set status = 'funded' "
                "where milestone_id = %s returning status",
                MILESTONE_1,
                **hana,
            ),
        ),
        Step(
            "payment_service",
            "records Stripe's PaymentIntent: the payment is funded (fund_milestone_payment)",
            True,
            _changes(
                "select f ->> 'status', f ->> 'funded_at' is not null "
                "from public.fund_milestone_payment((select id from public.milestone_payments "
                "where milestone_id = %s), 'pi_3DemoIntent01', 250000, 'USD', 'demo-fund-1') "
                "as f where f ? 'status'",
                MILESTONE_1,
                service="payment_service",
            ),
        ),
        Step(
            "Hana (homeowner)",
            "tries to lower the amount of the funded payment",
            False,
            _changes(
                "update public.milestone_payments set amount_minor = 1 "
                "where milestone_id = %s returning amount_minor",
                MILESTONE_1,
                **hana,
            ),
        ),
        Step(
            "Hana (homeowner, with MFA)",
            "tries to release the payment before Carl submits milestone 1",
            False,
            _changes(
                "update public.milestone_payments set status = 'released' "
                "where milestone_id = %s returning status",
                MILESTONE_1,
                **hana_mfa,
            ),
        ),
        Step(
            "Hana (homeowner)",
            "tries to mark milestone 1 completed herself",
            False,
            _changes(
                "update public.project_milestones set status = 'completed' "
                "where id = %s returning status",
                MILESTONE_1,
                **hana,
            ),
        ),
        Step(
            "Carl (contractor)",
            "submits milestone 1 for Hana's review",
            True,
            _changes(
                "select a ->> 'status', a ->> 'review_ends_at' "
                "from public.submit_milestone(%s, 'demo-submit-1') as a where a ? 'status'",
                MILESTONE_1,
                **carl,
            ),
        ),
        Step(
            "Hana (homeowner, password only)",
            "tries to release $2,500.00 without MFA",
            False,
            _changes(
                "update public.milestone_payments set status = 'released' "
                "where milestone_id = %s returning status",
                MILESTONE_1,
                **hana,
            ),
        ),
        Step(
            "Hana (homeowner, with MFA)",
            "releases the payment to Carl",
            True,
            _changes(
                "update public.milestone_payments set status = 'released' "
                "where milestone_id = %s returning status, released_at is not null",
                MILESTONE_1,
                **hana_mfa,
            ),
        ),
        Step(
            "Hana (homeowner)",
            "tries to make herself an admin",
            False,
            _changes(
                "update public.users set role = 'admin' where id = %s returning role", HANA, **hana
            ),
        ),
        Step(
            "Hana (homeowner, with MFA)",
            "tries to write a card number into her card's nickname",
            False,
            _changes(
                "update public.payment_methods set nickname = 'my card 4242 4242 4242 4242' "
                "returning id",
                **hana_mfa,
            ),
        ),
        Step(
            "Carl (contractor, password only)",
            "tries to add a payout account of his choosing (only the payout-methods function "
            "adds one, with MFA, once Stripe says it is his)",
            False,
            _changes(
                "insert into public.payout_methods (type, processor_account_id_lookup, "
                "processor_external_account_id_lookup, currency) values ('bank_account', "
                "'seed-demo:8-EVEPYur-zcFL5ZMnyQNArx6WM9J8E5etJh5EbaxtE', "
                "'seed-demo:Carl0wnChoiceOfBankAccountXXXXXXXXXXXXXXXXX', 'USD') returning id",
                **carl,
            ),
        ),
        Step(
            "Carl (contractor)",
            "reads his wallet: the payment less the 5% fee, held for the payout hold",
            True,
            _rows(
                "select currency, posted_minor, reserved_minor, withdrawable_minor "
                "from public.my_wallet_balances()",
                **carl,
            ),
        ),
        Step(
            "Ada (admin)",
            "reads every payment method, for support",
            True,
            _rows(
                "select user_id, brand, last4 from public.payment_methods", uid=ADA, role="admin"
            ),
        ),
        Step(
            "Ada (admin, password only)",
            "tries to make Carl an auditor (a staff member's change needs MFA)",
            False,
            _changes(
                "update public.users set role = 'auditor' where id = %s returning role",
                CARL,
                uid=ADA,
                role="admin",
            ),
        ),
        Step(
            "Aldo (auditor)",
            "may read the payment audit log",
            True,
            _rows("select count(*) as entries from public.payment_audit_logs", uid=ALDO),
        ),
        Step(
            "Hana (homeowner)",
            "tries to erase the payment audit log",
            False,
            _rows("delete from public.payment_audit_logs returning id", **hana),
        ),
        Step(
            "Dora (homeowner)",
            "adds her phone number to her profile",
            True,
            _changes(
                "update public.users set phone = '+14155550199' where id = %s "
                "returning full_name, phone",
                DORA,
                uid=DORA,
            ),
        ),
        Step(
            "Ada (admin, password only)",
            "tries to erase Dora's personal data, at Dora's request",
            False,
            _rows(
                "select public.erase_user(%s, 'Erasure asked by the user, request 2026-118')",
                DORA,
                uid=ADA,
                role="admin",
            ),
        ),
        Step(
            "Ada (admin, with MFA)",
            "tries to erase Carl, whose wallet holds his released payment",
            False,
            _rows(
                "select public.erase_user(%s, 'Erasure asked by the user, request 2026-119')",
                CARL,
                uid=ADA,
                aal="aal2",
                role="admin",
            ),
        ),
        Step(
            "Ada (admin, with MFA)",
            "erases Dora's personal data (the account banned, her audit fingerprint key shredded)",
            True,
            _rows(
                "select e ->> 'user_id', e ->> 'fingerprint_key' "
                "from public.erase_user(%s, 'Erasure asked by the user, request 2026-118') as e",
                DORA,
                uid=ADA,
                aal="aal2",
                role="admin",
            ),
        ),
        Step(
            "Aldo (auditor)",
            "reads Dora's history in the audit log: fingerprints, never her email, name or phone",
            True,
            _rows(
                "select operation, coalesce(new_values ->> 'email', '-'), "
                "coalesce(new_values ->> 'phone', '-') from public.payment_audit_logs "
                "where entity_id = %s order by seq",
                DORA,
                uid=ALDO,
            ),
        ),
        Step(
            "payguard (owner)",
            "seals and verifies the audit chain after the erasure",
            True,
            _audit_verified(owner_url),
        ),
        Step(
            "payguard (owner)",
            "reconciles the books after the erasure",
            True,
            _reconciled(owner_url),
        ),
    ]
