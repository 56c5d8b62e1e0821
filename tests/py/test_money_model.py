"""Property-based: random sequences of payment operations by random actors, some hostile,
checked after every step against a model in Python: statuses, balances, and conservation of
money. Every call goes through the app's path (authenticator, RLS, RPCs, triggers).

Each run draws a new seed (conftest.py prints it in the header); PAYGUARD_MODEL_SEED=N
replays one run exactly (`make test-model PAYGUARD_MODEL_SEED=N`, or `payguard test --py -k
money_model --seed N`), and PAYGUARD_MODEL_STEPS sets how many checked steps it runs, 2,000
at least (`make soak STEPS=20000`)."""

from __future__ import annotations

import math
import os
import random
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from payguard.testing.client import ApiError, AppClient
from payguard.testing.tokens import add_payout_method

STEPS = {"run": 0, "examples": 0}
MIN_STEPS = 2000
# Each round of the model: this many examples of at most this many steps, its seed drawn from
# the run's; rounds follow each other until the run's steps are done. The last round has only
# as many examples as the steps still to do need, at the steps per example seen so far, so
# that a shard does not run most of a round past its steps.
ROUND_EXAMPLES = 10
ROUND_STEPS = 40
FEE_BPS = 500
DUAL_CONTROL = 30_000
AMOUNTS = st.sampled_from([1_000, 9_999, 20_001, 45_000])
ACTORS = ("payer", "payee", "stranger", "admin", "payment_service", "escrow_service")


def fee(amount: int) -> int:
    return min(amount, (amount * FEE_BPS + 5_000) // 10_000)


@dataclass
class Payment:
    id: uuid.UUID
    amount: int
    milestone: uuid.UUID
    status: str = "pending"
    dispute: uuid.UUID | None = None
    # Its milestone submitted for review by the contractor (the payee): the payer may release.
    submitted: bool = False


@dataclass
class Withdrawal:
    id: uuid.UUID
    amount: int
    status: str
    approvals: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def settings_for_the_model(database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update private.settings set value = '0' where key in "
            "('escrow_hold_seconds', 'payout_hold_seconds', 'payout_method_cool_down_seconds')"
        )
        conn.execute(
            "update private.settings set value = jsonb_build_object('default', %s::int) "
            "where key = 'withdrawal_dual_control_threshold_minor'",
            (DUAL_CONTROL,),
        )
        conn.execute(
            "update private.settings set value = (select jsonb_object_agg(level, "
            "jsonb_build_object('calls', 100000, 'seconds', 60)) "
            "from unnest(array['low', 'medium', 'high']) as level) where key = 'velocity_limits'"
        )
        conn.execute(
            'update private.settings set value = \'{"time_zone": "UTC", "from": 0, '
            "\"to\": 24}' where key = 'business_hours'"
        )
        conn.execute("update private.fee_schedule set rate_bps = %s, fixed_minor = 0", (FEE_BPS,))


class PaymentWorld(RuleBasedStateMachine):
    """One homeowner, one contractor, a stranger, two admins; a project with escrow."""

    # Set by the test for its run: one connection for every request of every example, as
    # PostgREST's pool hands its connections on, and one as the schema owner. A new backend per
    # example would spend its first calls loading and compiling the same functions again.
    client: AppClient
    db: psycopg.Connection[tuple[object, ...]]

    def __init__(self) -> None:
        super().__init__()
        STEPS["examples"] += 1
        ids = [uuid.uuid4() for _ in range(5)]
        self.users = dict(zip(("payer", "payee", "stranger", "ada", "abe"), ids, strict=True))
        for name, user in self.users.items():
            self.db.execute(
                "insert into auth.users (id, aud, role, email, raw_user_meta_data) values "
                "(%s, 'authenticated', 'authenticated', %s, jsonb_build_object('role', %s::text))",
                (user, f"{user}@example.test", "contractor" if name == "payee" else "homeowner"),
            )
        self.db.execute(
            "update public.users set role = 'admin' where id in (%s, %s)",
            (self.users["ada"], self.users["abe"]),
        )
        self.project = uuid.uuid4()
        self.db.execute(
            "insert into public.projects (id, owner_id, contractor_id, title) "
            "values (%s, %s, %s, 'Model')",
            (self.project, self.users["payer"], self.users["payee"]),
        )
        self.db.execute(
            "insert into public.escrow_accounts (user_id, project_id, currency) "
            "values (%s, %s, 'USD')",
            (self.users["payer"], self.project),
        )
        # Each payee has a connected account of their own: an account is one user's.
        self.payout = add_payout_method(
            self.db,
            self.users["payee"],
            f"acct_Model{uuid.uuid4().hex[:12]}",
            f"ba_{uuid.uuid4().hex[:12]}",
        )
        self.payments: list[Payment] = []
        self.withdrawals: list[Withdrawal] = []
        self.escrow = 0
        self.wallet_posted = 0  # credits less posted debits
        self.wallet_reserved = 0
        self.positions = 0

    # -- calling -------------------------------------------------------------------------

    def call(
        self, actor: str, function: str, *args: object, after_key: tuple[object, ...] = ()
    ) -> str:
        """Call an RPC as `actor` (a fresh idempotency key after `args`, then `after_key`);
        returns 'ok' or the SQLSTATE that refused it."""
        key = uuid.uuid4().hex
        try:
            with self._as(actor) as req:
                req.rpc(function, *args, key, *after_key)
        except (psycopg.Error, ApiError) as exc:
            return str(exc.sqlstate)
        return "ok"

    def _as(self, actor: str):
        if actor in ("payment_service", "escrow_service"):
            return self.client.as_service(actor)
        if actor in ("ada", "abe", "admin"):
            # Staff write at aal2, with a fresh step-up, as the database requires.
            return self.client.as_user(
                self.users["ada" if actor == "admin" else actor], aal="aal2", role="admin"
            )
        return self.client.as_user(self.users[actor], aal="aal2")

    # -- rules ---------------------------------------------------------------------------

    @rule(amount=AMOUNTS, actor=st.sampled_from(["payer", "payee", "stranger"]))
    def create(self, amount: int, actor: str) -> None:
        self.positions += 1
        milestone = uuid.uuid4()
        self.db.execute(
            "insert into public.project_milestones (id, project_id, position, title, "
            "amount_minor, currency) values (%s, %s, %s, 'Step', %s, 'USD')",
            (milestone, self.project, self.positions, amount),
        )
        result = self.call(actor, "create_milestone_payment", milestone)
        if actor == "payer":
            assert result == "ok", result
            row = self.db.execute(
                "select id from public.milestone_payments where milestone_id = %s", (milestone,)
            ).fetchone()
            assert row is not None
            self.payments.append(Payment(row[0], amount, milestone))
        else:
            assert result == "42501", result

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), actor=st.sampled_from(ACTORS))
    def fund(self, data: st.DataObject, actor: str) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        result = self.call(
            actor,
            "fund_milestone_payment",
            payment.id,
            # at most 12 hex digits in a row: an id that could pass for a card number is refused
            f"pi_{uuid.uuid4().hex[:12]}Model",
            payment.amount,
            "USD",
        )
        if actor == "payment_service":
            # The processor's charge is always recorded; only a pending payment is funded by it.
            assert result == "ok", result
            if payment.status == "pending":
                payment.status = "funded"
                self.escrow += payment.amount
        else:
            assert result != "ok"

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), actor=st.sampled_from(ACTORS))
    def submit(self, data: st.DataObject, actor: str) -> None:
        """Only the contractor submits a milestone for review; a released one is approved."""
        payment = data.draw(st.sampled_from(self.payments))
        result = self.call(actor, "submit_milestone", payment.milestone)
        if actor == "payee" and payment.status != "released":
            assert result == "ok", result
            payment.submitted = True
        else:
            assert result != "ok"

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), actor=st.sampled_from(ACTORS))
    def release(self, data: st.DataObject, actor: str) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        result = self.call(actor, "release_milestone_payment", payment.id)
        if (
            actor == "payer"
            and payment.status == "funded"
            and payment.dispute is None
            and payment.submitted
        ):
            assert result == "ok", result
            self._released(payment)
        else:
            assert result != "ok"

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), actor=st.sampled_from(["payer", "payee", "stranger"]))
    def dispute(self, data: st.DataObject, actor: str) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        result = self.call(actor, "open_dispute", payment.id, "Not as agreed")
        if actor in ("payer", "payee") and payment.status == "funded":
            assert result == "ok", result
            payment.status = "disputed"
            row = self.db.execute(
                "select id from public.disputes "
                "where milestone_payment_id = %s and status = 'open'",
                (payment.id,),
            ).fetchone()
            assert row is not None
            payment.dispute = row[0]
        else:
            assert result != "ok"

    @precondition(lambda self: any(p.dispute for p in self.payments))
    @rule(
        data=st.data(),
        actor=st.sampled_from(["admin", "payer", "payee", "escrow_service"]),
        outcome=st.sampled_from(["release", "refund", "split"]),
    )
    def resolve(self, data: st.DataObject, actor: str, outcome: str) -> None:
        payment = data.draw(st.sampled_from([p for p in self.payments if p.dispute]))
        share = payment.amount // 2 if outcome == "split" else None
        result = self.call(
            actor,
            "resolve_dispute",
            payment.dispute,
            outcome,
            "Decided on the evidence",
            after_key=(share,),
        )
        if actor in ("admin", "escrow_service"):
            assert result == "ok", result
            payment.dispute = None
            self.escrow -= payment.amount
            if outcome == "release":
                payment.status = "released"
                self.wallet_posted += payment.amount - fee(payment.amount)
            elif outcome == "split":
                assert share is not None
                payment.status = "split"
                self.wallet_posted += share - fee(share)
            else:
                payment.status = "refunded"
        else:
            assert result != "ok"

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), actor=st.sampled_from(["payer", "payee", "stranger"]))
    def cancel(self, data: st.DataObject, actor: str) -> None:
        payment = data.draw(st.sampled_from(self.payments))
        result = self.call(actor, "cancel_milestone_payment", payment.id)
        if actor == "payer" and payment.status == "pending":
            assert result == "ok", result
            payment.status = "canceled"
        else:
            assert result != "ok"

    @rule(amount=AMOUNTS, actor=st.sampled_from(["payee", "stranger"]))
    def withdraw(self, amount: int, actor: str) -> None:
        result = self.call(actor, "request_withdrawal", self.payout, amount, "USD")
        available = self.wallet_posted - self.wallet_reserved
        if actor == "payee" and amount <= available:
            assert result == "ok", result
            row = self.db.execute(
                "select id, status::text from public.withdrawals where user_id = %s "
                "order by created_at desc, id limit 1",
                (self.users["payee"],),
            ).fetchone()
            assert row is not None
            # Dual control counts the UTC day: this request and the day's others that are not
            # failed or canceled (a world's withdrawals are all made within its run).
            today = sum(
                w.amount for w in self.withdrawals if w.status not in ("failed", "canceled")
            )
            expected = "requested" if amount + today >= DUAL_CONTROL else "approved"
            assert row[1] == expected
            self.withdrawals.append(Withdrawal(row[0], amount, expected))
            self.wallet_reserved += amount
        else:
            assert result != "ok"

    @precondition(lambda self: self.withdrawals)
    @rule(data=st.data(), actor=st.sampled_from(["ada", "abe", "payee", "payment_service"]))
    def approve(self, data: st.DataObject, actor: str) -> None:
        withdrawal = data.draw(st.sampled_from(self.withdrawals))
        result = self.call(
            actor, "approve_withdrawal", withdrawal.id, "Checked against the released payments"
        )
        if (
            actor in ("ada", "abe")
            and withdrawal.status == "requested"
            and actor not in withdrawal.approvals
        ):
            assert result == "ok", result
            withdrawal.approvals.add(actor)
            if len(withdrawal.approvals) == 2:
                withdrawal.status = "approved"
        else:
            assert result != "ok"

    @precondition(lambda self: self.withdrawals)
    @rule(
        data=st.data(),
        actor=st.sampled_from(["payment_service", "payee", "ada"]),
        succeed=st.booleans(),
    )
    def settle(self, data: st.DataObject, actor: str, succeed: bool) -> None:
        withdrawal = data.draw(st.sampled_from(self.withdrawals))
        if succeed:
            result = self.call(
                actor, "complete_withdrawal", withdrawal.id, f"po_{uuid.uuid4().hex[:12]}"
            )
        else:
            result = self.call(actor, "fail_withdrawal", withdrawal.id, "Bank refused")
        if actor == "payment_service" and withdrawal.status in ("approved", "processing"):
            assert result == "ok", result
            withdrawal.status = "paid" if succeed else "failed"
            self.wallet_reserved -= withdrawal.amount
            if succeed:
                self.wallet_posted -= withdrawal.amount
        else:
            assert result != "ok"

    @rule(amount=AMOUNTS)
    def replay(self, amount: int) -> None:
        """A retried create with its key pays once; the key with another milestone: PT409."""
        milestones = []
        for _ in range(2):
            self.positions += 1
            milestone = uuid.uuid4()
            self.db.execute(
                "insert into public.project_milestones (id, project_id, position, title, "
                "amount_minor, currency) values (%s, %s, %s, 'Step', %s, 'USD')",
                (milestone, self.project, self.positions, amount),
            )
            milestones.append(milestone)
        key = uuid.uuid4().hex
        answers = []
        for milestone in (milestones[0], milestones[0], milestones[1]):
            try:
                with self._as("payer") as req:
                    answer = req.rpc("create_milestone_payment", milestone, key)
                answers.append(str(answer["id"]))
            except (psycopg.Error, ApiError) as exc:
                answers.append(str(exc.sqlstate))
        assert answers[0] == answers[1], answers
        assert answers[2] == "PT409", answers
        self.payments.append(Payment(uuid.UUID(answers[0]), amount, milestones[0]))

    # -- model upkeep ----------------------------------------------------------------------

    def _released(self, payment: Payment) -> None:
        payment.status = "released"
        self.escrow -= payment.amount
        self.wallet_posted += payment.amount - fee(payment.amount)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_database_agrees_with_the_model(self) -> None:
        STEPS["run"] += 1
        # One round trip: every payment's status, the escrow, the payee's wallet, and the sum
        # of every ledger account.
        row = self.db.execute(
            "select (select coalesce(jsonb_object_agg(id, status::text), '{}') "
            "  from public.milestone_payments where id = any(%s)), "
            "(select balance_minor from public.escrow_accounts where project_id = %s), "
            "(select array[coalesce(sum(credits_posted - debits_posted), 0), "
            "  coalesce(sum(debits_pending), 0)] from private.ledger_limited_balances "
            "  where kind = 'user_wallet' and user_id = %s), "
            "(select sum(credits_posted - debits_posted + credits_pending - debits_pending) "
            "  from private.ledger_balances)",
            ([p.id for p in self.payments], self.project, self.users["payee"]),
        ).fetchone()
        assert row is not None
        statuses, escrow, wallet, conserved = row
        for payment in self.payments:
            assert statuses.get(str(payment.id)) == payment.status, (payment, statuses)
        assert escrow == self.escrow
        assert tuple(wallet) == (self.wallet_posted, self.wallet_reserved), wallet
        assert conserved == 0


def model_seed() -> int:
    """The run's seed: PAYGUARD_MODEL_SEED (conftest.py sets one for every run)."""
    return int(os.environ.get("PAYGUARD_MODEL_SEED") or random.SystemRandom().getrandbits(32))


def model_steps() -> int:
    """PAYGUARD_MODEL_STEPS, else MIN_STEPS (what `make test` runs), over all shards."""
    return int(os.environ.get("PAYGUARD_MODEL_STEPS") or MIN_STEPS)


# The run's steps are split into shards, each its own test (and, under pytest-xdist, on a worker
# of its own: conftest.py groups each shard apart), each its own sequence of rounds, its seeds
# drawn from the run's seed and the shard's number.
SHARDS = 2


@pytest.mark.parametrize("shard", range(SHARDS))
def test_random_operations_keep_the_books(cluster, database, settings_for_the_model, shard):
    with (
        AppClient(
            cluster.socket_url("authenticator", database),
            reproduce_failures=False,
            reuse_connection=True,
        ) as client,
        psycopg.connect(cluster.socket_url("postgres", database), autocommit=True) as db,
    ):
        PaymentWorld.client, PaymentWorld.db = client, db
        run_shard(shard)


def round_examples(to_do: int, done: int, examples: int) -> int:
    """A round's examples: ROUND_EXAMPLES, or fewer when, at the steps per example of the
    shard's rounds so far, fewer make the steps still to do."""
    if not examples:
        return ROUND_EXAMPLES
    return max(1, min(ROUND_EXAMPLES, math.ceil(to_do * examples / done)))


def run_shard(shard: int) -> None:
    run_seed = model_seed()
    wanted = -(-model_steps() // SHARDS)
    replay = f"replay: PAYGUARD_MODEL_SEED={run_seed} make test-model"
    print(f"money model shard {shard}: seed {run_seed}, {wanted} steps ({replay})")
    rounds = random.Random(f"{run_seed}/{shard}")
    round_number, first, first_example = 0, STEPS["run"], STEPS["examples"]
    while STEPS["run"] - first < wanted:
        round_number += 1
        machine = seed(rounds.getrandbits(64))(PaymentWorld)
        done, examples = STEPS["run"] - first, STEPS["examples"] - first_example
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=round_examples(wanted - done, done, examples),
                    stateful_step_count=ROUND_STEPS,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                ),
            )
        except BaseException:
            print(
                f"money model shard {shard} failed in round {round_number} after "
                f"{STEPS['run'] - first} steps; seed {run_seed}; {replay}"
            )
            raise
    ran = STEPS["run"] - first
    print(
        f"hypothesis ran {ran} checked steps in {round_number} rounds, "
        f"{STEPS['examples'] - first_example} examples"
    )
    assert ran >= wanted, ran
