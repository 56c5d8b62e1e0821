"""The whole border with Stripe, end to end, as the app, Stripe and operations drive it: a card
saved through `payment-methods` (a SetupIntent it makes, confirmed with the card), a milestone
payment created by its payer and funded by a real PaymentIntent through `milestone-payments`,
funded by the webhook the local Stripe signs and delivers to the served `stripe-webhook`,
released, the contractor's connected account made
through `payout-accounts` and verified (`account.updated`), a withdrawal requested, approved
(by two admins from the dual-control threshold on), paid out through `payouts` and completed by
`payout.paid`.

Each step checks the state it leads to (the payment's status, the ledger's balances, the
withdrawal's status, Stripe's objects) and raises FlowError otherwise. Used by the end-to-end
tests and timed by `payguard bench --only webhooks`."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import stripe
from psycopg import pq
from psycopg.types.json import Jsonb

from payguard.envelope import KEYS_VARIABLE, KeySet, decrypt
from payguard.functions import WEBHOOK_FUNCTION, Functions
from payguard.jwt import api_key
from payguard.local_stripe import LocalStripe
from payguard.reconcile import CHECKS, REQUIRES, reconcile
from payguard.testing.client import AppClient, Session
from payguard.testing.local_stack import (
    DELIVERY_TIMEOUT,
    Delivery,
    FunctionsClient,
    Response,
    StripeTestApi,
    WebhookReceiver,
    http,
    receiver_server,
)
from payguard.token_index import INDEX_KEYS_VARIABLE, lookup
from payguard.token_keys import local_environment

WAIT_TIMEOUT = 15.0
POLL_INTERVAL = 0.02
# Seconds between a call to the local Stripe and its webhook while webhooks are held in a
# sink (each passed on to the function by the test): the test waits for each one.
HELD_DELIVERY_DELAY = 0.01
# Steps that set the scene rather than belong to the flow.
SETUP_STEPS = frozenset({"parties"})
# Stripe's test card that is charged without 3-D Secure.
VISA = "4242424242424242"
T = TypeVar("T")


def signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `body`, as Stripe signs: `t=<time>,v1=<HMAC-SHA256 of
    "<time>.<body>" with the endpoint's secret>`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def post_event(url: str, body: bytes, signature: str | None) -> Response:
    """A delivery to the `stripe-webhook` function at `url`, as Stripe makes it."""
    headers = {} if signature is None else {"Stripe-Signature": signature}
    return http("POST", url, body, headers=headers)


class FlowError(AssertionError):
    """A step did not lead to the state it should have."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise FlowError(message)


def wait_until(
    read: Callable[[], T],
    accept: Callable[[T], bool],
    what: str,
    timeout: float = WAIT_TIMEOUT,
) -> T:
    """Poll `read` until `accept` takes its value (a webhook has been applied); its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise FlowError(f"{what}: still {value!r} after {timeout} s")
        time.sleep(POLL_INTERVAL)


@dataclass
class Border:
    """What the flow runs against: the database (as `postgres` for fixtures and reads, as
    `authenticator` for app requests), the served functions and the local Stripe.

    Its reads and app requests take turns on one connection each (autocommit; an app request
    is one transaction whose settings are local to it, as PostgREST's pool reuses
    connections), opened on first use: close() them, or use the Border as a `with` block."""

    database_url: str
    app_url: str
    functions: FunctionsClient
    stripe_api: StripeTestApi
    _conn: psycopg.Connection[tuple[Any, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _app: AppClient | None = field(default=None, init=False, repr=False, compare=False)

    def __enter__(self) -> Border:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._app is not None:
            self._app.close()
            self._app = None

    @property
    def stripe(self) -> stripe.StripeClient:
        return self.stripe_api.client

    @property
    def app(self) -> AppClient:
        if self._app is None:
            self._app = AppClient(self.app_url, reuse_connection=True)
        return self._app

    @contextmanager
    def sql(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """The connection as `postgres`, autocommit, reused from one block to the next."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        conn = self._conn
        try:
            yield conn
        except BaseException:
            # A connection left inside a transaction is not handed to the next block.
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                self.close()
            raise
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self.close()

    def scalar(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        with self.sql() as conn:
            row = conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def token_keys(self) -> tuple[KeySet, KeySet]:
        """The envelope and index keys the served functions hold."""
        env = local_environment(self.functions.functions.project.state_dir)
        return (
            KeySet.parse(env[KEYS_VARIABLE], KEYS_VARIABLE),
            KeySet.parse(env[INDEX_KEYS_VARIABLE], INDEX_KEYS_VARIABLE),
        )

    def opened(self, table: str, column: str, row_key: uuid.UUID | str) -> str | None:
        """The token `column` of row `row_key` of public.`table` holds, opened as a function
        opens it (its row key: `user_id` for processor_customers, `id` otherwise); None when
        the row holds it by its lookup alone, or there is no such row."""
        key_column = "user_id" if table == "processor_customers" else "id"
        sealed = self.scalar(
            f"select {column}_sealed from public.{table} where {key_column} = %s", (row_key,)
        )
        if sealed is None:
            return None
        return decrypt(
            self.token_keys()[0], sealed, table=table, column=column, row_id=str(row_key)
        )

    def lookup_of(self, token: str) -> str:
        """`token`'s lookup under the functions' current index key."""
        return lookup(self.token_keys()[1], token)

    def lift_holds(self) -> None:
        """No escrow or payout hold, and no payout-method cool-down: a payment is released,
        and its money withdrawn to a new payout method, at once. The cool-down's own tests
        (withdrawals/payout_method_cool_down) keep it."""
        with self.sql() as conn:
            conn.execute(
                "update private.settings set value = '0' where key in "
                "('escrow_hold_seconds', 'payout_hold_seconds', 'payout_method_cool_down_seconds')"
            )

    def make_user(self, name: str, role: str | None = None) -> uuid.UUID:
        """A confirmed user; `role` sets their application role (contractor, admin)."""
        identifier = f"{name}-{uuid.uuid4().hex[:8]}"
        metadata = {"role": role} if role == "contractor" else {}
        with self.sql() as conn:
            row = conn.execute(
                "select tests.create_supabase_user(%s, metadata => %s::jsonb)",
                (identifier, Jsonb(metadata)),
            ).fetchone()
            assert row is not None
            user = uuid.UUID(str(row[0]))
            if role == "admin":
                conn.execute("update public.users set role = 'admin' where id = %s", (user,))
        return user

    def payment_status(self, payment: uuid.UUID) -> str:
        return str(
            self.scalar(
                "select status::text from public.milestone_payments where id = %s", (payment,)
            )
        )

    def withdrawal_status(self, withdrawal: uuid.UUID) -> str:
        return str(
            self.scalar("select status::text from public.withdrawals where id = %s", (withdrawal,))
        )

    def escrow_balance(self, escrow: uuid.UUID) -> int:
        """The escrow account's balance in the ledger (posted credits less debits)."""
        return int(
            self.scalar(
                "select coalesce(b.credits_posted - b.debits_posted, 0) "
                "from private.ledger_accounts as a "
                "join private.ledger_balances as b on b.account_id = a.id "
                "where a.escrow_account_id = %s",
                (escrow,),
            )
            or 0
        )

    def wallet(self, user: uuid.UUID, currency: str = "USD") -> dict[str, int]:
        """The user's wallet as they read it (`my_wallet_balances()`, under RLS)."""
        with self.app.as_user(user, method="GET") as req:
            row = req.fetchone(
                "select posted_minor, reserved_minor, withdrawable_minor "
                "from public.my_wallet_balances() where currency = %s",
                (currency,),
            )
        if row is None:
            return {}
        return dict(zip(("posted_minor", "reserved_minor", "withdrawable_minor"), row, strict=True))

    def event_status(self, type_: str, object_id: str) -> str | None:
        """The recorded status of the latest webhook event of `type_` about `object_id`."""
        # A token (an account's acct_ id) is stored as its lookup, as stripe-webhook passes it.
        status = self.scalar(
            "select status::text from public.webhook_events where type = %s "
            "and payload -> 'data' -> 'object' ->> 'id' in (%s, %s) "
            "order by received_at desc limit 1",
            (type_, object_id, self.lookup_of(object_id)),
        )
        return None if status is None else str(status)

    def add_payout_method(self, user: uuid.UUID, account: str, currency: str) -> uuid.UUID:
        """A bank account added to the contractor's connected account at Stripe, then saved as
        their payout method by the served `payout-methods` function (aal2); returns its id."""
        bank = self.stripe_api.add_external_account(account, currency)
        answer = self.functions.call(
            "payout-methods",
            {"external_account": bank, "nickname": "Checking"},
            user=user,
            aal="aal2",
        )
        expect(answer.status == 201, f"payout-methods answered {answer}")
        expect("ba_" not in json.dumps(answer.body), "the answer names no processor id")
        return uuid.UUID(str(answer.body["id"]))

    def user_request(
        self, user: uuid.UUID, role: str = "authenticated"
    ) -> AbstractContextManager[Session]:
        """A request of `user` through PostgREST, at aal2 with a fresh MFA step-up."""
        return self.app.as_user(user, aal="aal2", role=role)

    def onboard(self, user: uuid.UUID) -> str:
        """The contractor's connected account, made at Stripe and recorded as theirs by the
        served `payout-accounts` function (aal2); returns its acct_ id."""
        answer = self.functions.call("payout-accounts", {}, user=user, aal="aal2")
        expect(answer.status in (200, 201), f"payout-accounts answered {answer}")
        expect("acct_" not in json.dumps(answer.body), "the answer names no processor id")
        expect(
            self.scalar(
                "select user_id from public.processor_accounts where id = %s",
                (answer.body["account_id"],),
            )
            == user,
            "the account is recorded as the contractor's",
        )
        account = str(
            self.opened("processor_accounts", "processor_account_id", answer.body["account_id"])
        )
        expect(account.startswith("acct_"), "the account is recorded sealed")
        metadata = self.stripe.v1.accounts.retrieve(account).to_dict().get("metadata") or {}
        expect(
            metadata.get("user_id") == str(user),
            f"the account at Stripe names its user: {metadata}",
        )
        return account


@dataclass
class Flow:
    """One run of the flow; its ids, and the time each step took (seconds)."""

    border: Border
    amount: int = 600_000
    currency: str = "USD"
    timings: dict[str, float] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - started

    @property
    def total(self) -> float:
        """The flow's time, its parties' setup (SQL fixtures) left out."""
        return sum(t for name, t in self.timings.items() if name not in SETUP_STEPS)

    def run(self) -> Flow:
        self.parties()
        self.save_card()
        self.create_payment()
        self.fund()
        self.submit()
        self.release()
        self.verify_account()
        self.withdraw()
        self.approve()
        self.pay_out()
        self.settle()
        return self

    def parties(self) -> None:
        b = self.border
        with self.step("parties"):
            homeowner, contractor = b.make_user("hana"), b.make_user("carl", "contractor")
            admins = [b.make_user("ada", "admin"), b.make_user("abe", "admin")]
            project, milestone = uuid.uuid4(), uuid.uuid4()
            with b.sql() as conn:
                conn.execute(
                    "insert into public.projects (id, owner_id, contractor_id, title) "
                    "values (%s, %s, %s, 'Kitchen remodel')",
                    (project, homeowner, contractor),
                )
                conn.execute(
                    "insert into public.project_milestones (id, project_id, position, title, "
                    "amount_minor, currency) values (%s, %s, 1, 'Cabinets', %s, %s)",
                    (milestone, project, self.amount, self.currency),
                )
                escrow = conn.execute(
                    "insert into public.escrow_accounts (user_id, project_id, currency) "
                    "values (%s, %s, %s) returning id",
                    (homeowner, project, self.currency),
                ).fetchone()
                assert escrow is not None
        self.ids.update(
            homeowner=homeowner,
            contractor=contractor,
            admins=admins,
            milestone=milestone,
            escrow=escrow[0],
        )

    def save_card(self) -> None:
        """The payer saves a card as the app does: `payment-methods` makes a SetupIntent for
        their customer, the client confirms it with the card they type (Stripe.js; here the
        card's test number), and `payment-methods` saves the card of that SetupIntent."""
        b, homeowner = self.border, self.ids["homeowner"]
        with self.step("save card"):
            setup = b.functions.call("payment-methods", {}, user=homeowner, aal="aal2")
            expect(setup.status == 200, f"the SetupIntent: {setup.status} {setup.body}")
            intent = str(setup.body["setup_intent_id"])
            # Stripe.js confirms with the client secret and the card typed; stripe-python's
            # types know neither on a server-side call.
            params: Any = {
                "client_secret": setup.body["client_secret"],
                "payment_method_data": {
                    "type": "card",
                    "card": {"number": VISA, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
                },
            }
            confirmed = b.stripe.v1.setup_intents.confirm(intent, params)
            expect(confirmed.status == "succeeded", f"the card's setup: {confirmed.status}")
            answer = b.functions.call(
                "payment-methods",
                {"setup_intent": intent, "nickname": "Visa"},
                user=homeowner,
                aal="aal2",
            )
        expect(answer.status == 201, f"saving the card: {answer.status} {answer.body}")
        method = answer.body
        expect(method["last4"] == "4242" and method["brand"] == "visa", f"the saved card: {method}")
        customer = b.opened("processor_customers", "processor_customer_id", homeowner)
        expect(customer is not None, "the customer is recorded")
        card = str(confirmed.payment_method)
        expect("pm_" not in json.dumps(method), "the answer names no processor id")
        expect(
            b.opened("payment_methods", "processor_payment_method_id", method["id"]) == card,
            "the card of the SetupIntent, recorded sealed",
        )
        attached = b.stripe.v1.payment_methods.retrieve(card)
        expect(attached.customer == customer, f"Stripe attached {card} to {attached.customer}")
        self.ids.update(payment_method=uuid.UUID(method["id"]), card=card, customer=customer)

    def create_payment(self) -> None:
        b = self.border
        with self.step("create payment"), b.user_request(self.ids["homeowner"]) as req:
            created = req.rpc(
                "create_milestone_payment", self.ids["milestone"], f"create-{uuid.uuid4()}"
            )
        payment = uuid.UUID(created["id"])
        expect(b.payment_status(payment) == "pending", "a new payment is pending")
        self.ids["payment"] = payment

    def charge(self) -> str:
        """The payer's request to `milestone-payments`: Stripe charges the card; the id of the
        PaymentIntent (the payment is funded only when its webhook is applied)."""
        answer = self.border.functions.call(
            "milestone-payments",
            {
                "milestone_payment_id": str(self.ids["payment"]),
                "payment_method_id": str(self.ids["payment_method"]),
            },
            user=self.ids["homeowner"],
            aal="aal2",
        )
        expect(answer.status == 202, f"funding: {answer.status} {answer.body}")
        expect(answer.body["status"] == "succeeded", f"the charge: {answer.body}")
        return str(answer.body["payment_intent_id"])

    def fund(self) -> None:
        b, payment = self.border, self.ids["payment"]
        with self.step("fund (PaymentIntent, webhook)"):
            intent_id = self.charge()
            wait_until(lambda: b.payment_status(payment), lambda s: s == "funded", "the payment")
        intent = b.stripe.v1.payment_intents.retrieve(intent_id)
        expect(
            (intent.status, intent.amount, intent.currency, intent.customer)
            == ("succeeded", self.amount, self.currency.lower(), self.ids["customer"]),
            f"Stripe's PaymentIntent: {intent.status} {intent.amount} {intent.currency}",
        )
        expect(
            intent.metadata is not None and intent.metadata["milestone_payment_id"] == str(payment),
            "the intent names the payment",
        )
        expect(
            b.event_status("payment_intent.succeeded", intent.id) == "processed",
            "the webhook funded it",
        )
        expect(b.escrow_balance(self.ids["escrow"]) == self.amount, "the escrow holds the amount")
        self.ids["intent"] = intent.id

    def submit(self) -> None:
        """The contractor submits the milestone for the payer's review: its payment may then be
        released."""
        b = self.border
        with self.step("submit milestone"), b.user_request(self.ids["contractor"]) as req:
            req.rpc("submit_milestone", self.ids["milestone"], f"submit-{uuid.uuid4()}")
        expect(
            b.scalar(
                "select status::text from public.project_milestones where id = %s",
                (self.ids["milestone"],),
            )
            == "completed",
            "the milestone is submitted for review",
        )

    def release(self) -> None:
        b = self.border
        with self.step("release"), b.user_request(self.ids["homeowner"]) as req:
            req.rpc("release_milestone_payment", self.ids["payment"], f"release-{uuid.uuid4()}")
        expect(b.payment_status(self.ids["payment"]) == "released", "the payment is released")
        expect(b.escrow_balance(self.ids["escrow"]) == 0, "the escrow is empty")
        fee = int(
            b.scalar(
                "select coalesce(sum(t.amount), 0) from private.ledger_transfers as t "
                "join private.ledger_accounts as a on a.id = t.credit_account_id "
                "where t.reference_id = %s and a.kind = 'platform_fees'",
                (self.ids["payment"],),
            )
        )
        expect(0 < fee < self.amount, f"the platform's fee: {fee}")
        wallet = b.wallet(self.ids["contractor"])
        expect(
            wallet.get("withdrawable_minor") == self.amount - fee,
            f"the contractor's wallet after a fee of {fee}: {wallet}",
        )
        self.ids["payable"] = self.amount - fee

    def verify_account(self) -> None:
        b, contractor = self.border, self.ids["contractor"]
        with self.step("connected account verified (account.updated)"):
            account = b.onboard(contractor)
            method = b.add_payout_method(contractor, account, self.currency)
            b.stripe_api.verify_account(account)
            status = wait_until(
                lambda: b.scalar(
                    "select verification_status from public.payout_methods where id = %s",
                    (method,),
                ),
                lambda s: s == "verified",
                "the payout method's verification",
            )
        expect(status == "verified", "the payout method is verified")
        expect(
            b.event_status("account.updated", account) == "processed",
            "account.updated was applied",
        )
        self.ids.update(account=account, payout_method=method)

    def withdraw(self) -> None:
        b, amount = self.border, self.ids["payable"]
        with self.step("withdrawal requested"), b.user_request(self.ids["contractor"]) as req:
            req.rpc(
                "request_withdrawal",
                self.ids["payout_method"],
                amount,
                self.currency,
                f"withdraw-{uuid.uuid4()}",
            )
        withdrawal = b.scalar(
            "select id from public.withdrawals where user_id = %s", (self.ids["contractor"],)
        )
        self.ids["withdrawal"] = withdrawal
        threshold = int(
            b.scalar(
                "select coalesce((value ->> %s)::bigint, (value ->> 'default')::bigint) "
                "from private.settings where key = 'withdrawal_dual_control_threshold_minor'",
                (self.currency,),
            )
        )
        self.ids["dual_control"] = amount >= threshold
        expected = "requested" if amount >= threshold else "approved"
        expect(b.withdrawal_status(withdrawal) == expected, f"a new withdrawal is {expected}")
        wallet = b.wallet(self.ids["contractor"])
        expect(
            (wallet.get("reserved_minor"), wallet.get("withdrawable_minor")) == (amount, 0),
            f"the withdrawal reserves the money: {wallet}",
        )

    def approve(self) -> None:
        b, withdrawal = self.border, self.ids["withdrawal"]
        if not self.ids["dual_control"]:
            return
        with self.step("approved by two admins"):
            for number, admin in enumerate(self.ids["admins"]):
                with b.user_request(admin, role="admin") as req:
                    req.rpc(
                        "approve_withdrawal",
                        withdrawal,
                        "Checked against the released milestone payment",
                        f"approve-{uuid.uuid4()}",
                    )
                expected = "approved" if number == 1 else "requested"
                expect(
                    b.withdrawal_status(withdrawal) == expected,
                    f"after {number + 1} approval(s) the withdrawal is {expected}",
                )

    def pay_out(self) -> None:
        b, withdrawal, account = self.border, self.ids["withdrawal"], self.ids["account"]
        with self.step("paid out (transfer, payout)"):
            answer = b.functions.call(
                "payouts", {"withdrawal_id": str(withdrawal)}, token=api_key("service_role")
            )
        expect(answer.status == 200, f"the payout: {answer.status} {answer.body}")
        [result] = answer.body["results"]
        expect(result["status"] == "sent", f"the payout: {result}")
        transfer = b.stripe.v1.transfers.retrieve(result["transfer_id"])
        payout = b.stripe.v1.payouts.retrieve(result["payout_id"], {}, {"stripe_account": account})
        amount = self.ids["payable"]
        expect(
            (transfer.amount, transfer.currency, transfer.destination)
            == (amount, self.currency.lower(), account),
            f"Stripe's transfer: {transfer.amount} {transfer.currency} to {transfer.destination}",
        )
        expect(
            (payout.amount, payout.currency, payout.status)
            == (amount, self.currency.lower(), "pending"),
            f"Stripe's payout: {payout.amount} {payout.currency} {payout.status}",
        )
        expect(b.withdrawal_status(withdrawal) == "processing", "the withdrawal is processing")
        expect(
            b.wallet(self.ids["contractor"]).get("reserved_minor") == amount,
            "the money stays reserved until the payout is paid",
        )
        self.ids.update(transfer=transfer.id, payout=payout.id)

    def settle(self) -> None:
        b, withdrawal = self.border, self.ids["withdrawal"]
        with self.step("payout.paid completes it"):
            b.stripe_api.settle_payout(self.ids["payout"], "paid")
            wait_until(
                lambda: b.withdrawal_status(withdrawal), lambda s: s == "paid", "the withdrawal"
            )
        expect(
            b.event_status("payout.paid", self.ids["payout"]) == "processed",
            "payout.paid was applied",
        )
        wallet = b.wallet(self.ids["contractor"])
        expect(
            all(
                wallet.get(k) == 0 for k in ("posted_minor", "reserved_minor", "withdrawable_minor")
            ),
            f"the contractor's wallet is empty: {wallet}",
        )


LEDGER_CHECKS = [name for name, _ in CHECKS if name not in REQUIRES]


@dataclass
class Stage:
    """Stripe's webhooks held back in a sink, each passed on to the served `stripe-webhook`
    by the test that wants it, when it wants it."""

    border: Border
    sink: WebhookReceiver
    url: str
    secret: str
    admin_url: str

    def flow(self, amount: int = 30_000) -> Flow:
        """A payer with a saved card and a pending milestone payment of `amount` USD."""
        flow = Flow(self.border, amount=amount)
        flow.parties()
        flow.save_card()
        flow.create_payment()
        return flow

    def ready_to_withdraw(self, flow: Flow, amount: int) -> None:
        """The flow's contractor with `amount` in their wallet (a test helper's funding) and a
        payout method on a connected account that Stripe verified, its `account.updated`
        applied; then the flow can `withdraw()` it."""
        border, contractor = self.border, flow.ids["contractor"]
        with border.sql() as conn:
            conn.execute("select tests.fund_wallet(%s, %s)", (contractor, amount))
        account = border.onboard(contractor)
        method = border.add_payout_method(contractor, account, "USD")
        border.stripe_api.verify_account(account)
        verified = self.sink.wait_for(
            lambda e: (
                e["type"] == "account.updated"
                and e["data"]["object"]["id"] == account
                and bool(e["data"]["object"]["payouts_enabled"])
            )
        )
        expect(self.deliver(verified)["status"] == "processed", "account.updated applied")
        flow.ids.update(payable=amount, account=account, payout_method=method)

    def captured(self, type_: str, object_id: str) -> Delivery:
        """Stripe's delivery of the event of `type_` about `object_id`, held back."""
        return self.sink.wait_for_event(type_, object_id)

    def next_delivery(self, event_id: str) -> Delivery:
        """The next delivery of `event_id` to arrive (a resend)."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                delivery = self.sink.deliveries.get(timeout=0.5)
            except queue.Empty:
                continue
            self.sink.seen.append(delivery)
            if delivery.event["id"] == event_id:
                return delivery
        raise FlowError(f"{event_id} was not delivered again")

    def deliver(self, delivery: Delivery) -> dict[str, Any]:
        """Pass Stripe's delivery on to the function, as it was sent; the function's answer."""
        answer = post_event(self.url, delivery.body, delivery.signature)
        expect(answer.status == 200, f"the webhook answered {answer.status} {answer.body}")
        expect(isinstance(answer.body, dict), f"the webhook answered {answer.body!r}")
        return dict(answer.body)

    def recorded(self, event_id: str) -> int:
        return int(
            self.border.scalar(
                "select count(*) from public.webhook_events where id = %s", (event_id,)
            )
        )

    def fundings(self, payment: uuid.UUID) -> int:
        return int(
            self.border.scalar(
                "select count(*) from private.ledger_transfers where reference_id = %s "
                "and code = 'milestone_funding'",
                (payment,),
            )
        )

    def open_inconsistencies(self, object_id: str) -> list[str]:
        with self.border.sql() as conn:
            rows = conn.execute(
                "select kind from public.processor_inconsistencies "
                "where processor_object_id = %s and resolution is null order by kind",
                (object_id,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def assert_ledger_reconciles(self) -> None:
        found = [d for d in reconcile(self.admin_url) if d.check in LEDGER_CHECKS]
        expect(found == [], f"the ledger does not reconcile: {found}")


@contextmanager
def held_webhooks(
    border: Border, local_stripe: LocalStripe, functions: Functions, admin_url: str
) -> Iterator[Stage]:
    """The local Stripe's webhooks go to a sink instead of the served `stripe-webhook` (the
    function is still served, at Stage.url) until the end of the block. Nothing races them to
    the function there, so the local Stripe sends them HELD_DELIVERY_DELAY after the call
    meanwhile (its delay before is restored afterwards)."""
    url = functions.status()[WEBHOOK_FUNCTION]
    before = border.stripe_api.configure_delivery()["delay"]
    with receiver_server() as sink:
        local_stripe.deliver_webhooks_to(sink.url)
        border.stripe_api.configure_delivery(delay=HELD_DELIVERY_DELAY)
        try:
            yield Stage(border, sink, url, local_stripe.webhook_secret(), admin_url)
        finally:
            border.stripe_api.configure_delivery(delay=before)
            local_stripe.deliver_webhooks_to(url)
