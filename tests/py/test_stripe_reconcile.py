"""`payguard reconcile --stripe`: payguard's books against Stripe's records. First each kind
of difference on hand-made records (and its absence when they agree), then the real thing: a
payment funded by a real PaymentIntent and a withdrawal paid out through Connect on the local
Stripe reconcile clean, and each planted inconsistency is reported, by the library and by the
command (exit 1, --json)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from payguard.cli import app
from payguard.stripe_reconcile import (
    CHECKS,
    Books,
    Charge,
    Dispute,
    Payment,
    Payout,
    StripeRecords,
    Transfer,
    Withdrawal,
    compare,
    reconcile_stripe,
)
from payguard.testing.tokens import add_payout_method, opened_account, verify_account

PAYMENT = Payment("mp1", "funded", 30000, "USD", "pi_One")
CHARGE = Charge("ch_One", "pi_One", "succeeded", 30000, 0, "USD")
WITHDRAWAL = Withdrawal("w1", "paid", 20000, "USD", "po_One", "acct_One")
PAYOUT = Payout("po_One", "acct_One", "paid", 20000, "USD")


def checks(books: Books, records: StripeRecords) -> list[str]:
    return [d.check for d in compare(books, records)]


def test_agreeing_records_have_no_difference():
    books = Books([PAYMENT, Payment("mp2", "pending", 100, "USD", None)], [WITHDRAWAL])
    records = StripeRecords(
        [CHARGE, Charge("ch_Failed", "pi_Two", "failed", 100, 0, "USD")], [PAYOUT]
    )
    assert checks(books, records) == []


def test_a_charge_with_no_funded_payment_unless_it_was_refunded_whole():
    stray = Charge("ch_Stray", "pi_Stray", "succeeded", 500, 0, "USD")
    assert checks(Books([PAYMENT], []), StripeRecords([CHARGE, stray], [])) == [CHECKS[0]]
    pending = Payment("mp2", "pending", 500, "USD", "pi_Stray")
    assert checks(Books([PAYMENT, pending], []), StripeRecords([CHARGE, stray], [])) == [
        CHECKS[0]
    ], "a payment that is not funded does not account for its charge"
    partly = Charge("ch_Stray", "pi_Stray", "succeeded", 500, 499, "USD")
    assert checks(Books([PAYMENT], []), StripeRecords([CHARGE, partly], [])) == [CHECKS[0]]
    refunded = Charge("ch_Stray", "pi_Stray", "succeeded", 500, 500, "USD")
    assert checks(Books([PAYMENT], []), StripeRecords([CHARGE, refunded], [])) == []


def test_a_funded_payment_with_no_succeeded_charge():
    failed = Charge("ch_One", "pi_One", "failed", 30000, 0, "USD")
    assert checks(Books([PAYMENT], []), StripeRecords([failed], [])) == [CHECKS[1]]
    assert checks(Books([PAYMENT], []), StripeRecords([], [])) == [CHECKS[1]]
    released = Payment("mp1", "released", 30000, "USD", None)
    assert checks(Books([released], []), StripeRecords([], [])) == [CHECKS[1]]


@pytest.mark.parametrize("status", ["funded", "disputed", "released"])
def test_a_held_payment_whose_charge_was_refunded_in_full_or_in_part(status):
    held = Payment("mp1", status, 30000, "USD", "pi_One")
    refunded = Charge("ch_One", "pi_One", "succeeded", 30000, 30000, "USD")
    found = compare(Books([held], []), StripeRecords([refunded], []))
    assert [d.check for d in found] == [CHECKS[7]]
    assert "refunded ch_One in full" in found[0].subject
    partly = Charge("ch_One", "pi_One", "succeeded", 30000, 10000, "USD")
    found = compare(Books([held], []), StripeRecords([partly], []))
    assert [d.check for d in found] == [CHECKS[7]], "a partial refund is reported too"
    assert "refunded ch_One in part, 10000 of 30000" in found[0].subject
    unrefunded = Charge("ch_One", "pi_One", "succeeded", 30000, 0, "USD")
    assert checks(Books([held], []), StripeRecords([unrefunded], [])) == []


def test_a_refunded_payment_whose_charge_was_refunded_agrees():
    done = Payment("mp1", "refunded", 30000, "USD", "pi_One", 30000)
    refunded = Charge("ch_One", "pi_One", "succeeded", 30000, 30000, "USD")
    assert checks(Books([done], []), StripeRecords([refunded], [])) == []


@pytest.mark.parametrize("refunded", [0, 10000, 29999])
def test_a_refunded_payment_whose_charge_stripe_did_not_refund_whole(refunded):
    done = Payment("mp1", "refunded", 30000, "USD", "pi_One", 30000)
    charge = Charge("ch_One", "pi_One", "succeeded", 30000, refunded, "USD")
    found = compare(Books([done], []), StripeRecords([charge], []))
    assert [d.check for d in found] == [CHECKS[9]]
    assert f"payguard refunds 30000 USD, Stripe refunded {refunded} of ch_One" in found[0].subject


def test_a_split_is_refunded_by_the_payers_share_exactly():
    split = Payment("mp1", "split", 30000, "USD", "pi_One", 20000)
    share = Charge("ch_One", "pi_One", "succeeded", 30000, 20000, "USD")
    assert checks(Books([split], []), StripeRecords([share], [])) == []
    for refunded in (0, 10000, 30000):
        charge = Charge("ch_One", "pi_One", "succeeded", 30000, refunded, "USD")
        assert checks(Books([split], []), StripeRecords([charge], [])) == [CHECKS[9]], refunded


def test_a_chargeback_refund_owes_no_refund_at_stripe():
    """A payment refunded by a lost chargeback: the issuer took the money back, Stripe's charge
    is not refunded, and nothing is reported."""
    lost = Payment("mp1", "refunded", 30000, "USD", "pi_One", None)
    assert checks(Books([lost], []), StripeRecords([CHARGE], [])) == []


@pytest.mark.parametrize(
    ("amount", "currency"), [(29999, "USD"), (30000, "EUR")], ids=["amount", "currency"]
)
def test_a_charge_that_differs_from_its_payment(amount, currency):
    charge = Charge("ch_One", "pi_One", "succeeded", amount, 0, currency)
    found = compare(Books([PAYMENT], []), StripeRecords([charge], []))
    assert [d.check for d in found] == [CHECKS[2]]
    assert f"Stripe ch_One {amount} {currency}" in found[0].subject


def test_a_payout_in_one_place_only():
    stray = Payout("po_Stray", "acct_One", "pending", 100, "USD")
    failed = Payout("po_Failed", "acct_One", "failed", 100, "USD")
    assert checks(Books([], [WITHDRAWAL]), StripeRecords([], [PAYOUT, stray, failed])) == [
        CHECKS[3]
    ]
    assert checks(Books([], [WITHDRAWAL]), StripeRecords([], [])) == [CHECKS[4]]
    processing = Withdrawal("w2", "processing", 100, "USD", None, "acct_One")
    approved = Withdrawal("w3", "approved", 100, "USD", None, "acct_One")
    assert checks(Books([], [processing, approved]), StripeRecords([], [])) == [CHECKS[4]]


@pytest.mark.parametrize(
    ("payout", "detail"),
    [
        (Payout("po_One", "acct_One", "paid", 19999, "USD"), "payguard 20000 USD, Stripe 19999"),
        (Payout("po_One", "acct_One", "paid", 20000, "EUR"), "Stripe 20000 EUR"),
        (Payout("po_One", "acct_Other", "paid", 20000, "USD"), "Stripe's acct_Other"),
        (Payout("po_One", "acct_One", "pending", 20000, "USD"), "payguard paid, Stripe pending"),
        (Payout("po_One", "acct_One", "failed", 20000, "USD"), "payguard paid, Stripe failed"),
    ],
    ids=["amount", "currency", "account", "still pending", "failed"],
)
def test_a_payout_that_differs_from_its_withdrawal(payout, detail):
    found = compare(Books([], [WITHDRAWAL]), StripeRecords([], [payout]))
    assert [d.check for d in found] == [CHECKS[5]]
    assert detail in found[0].subject


def test_a_failed_payout_of_a_processing_withdrawal_differs():
    processing = Withdrawal("w1", "processing", 20000, "USD", "po_One", "acct_One")
    failed = Payout("po_One", "acct_One", "failed", 20000, "USD")
    assert checks(Books([], [processing]), StripeRecords([], [failed])) == [CHECKS[5]]
    pending = Payout("po_One", "acct_One", "pending", 20000, "USD")
    assert checks(Books([], [processing]), StripeRecords([], [pending])) == []


def test_a_transfer_that_differs_from_its_withdrawal():
    paid = Withdrawal("w4", "paid", 20000, "USD", "po_Four", "acct_One", "tr_Four")
    payout = Payout("po_Four", "acct_One", "paid", 20000, "USD")
    made = Transfer("tr_Four", "acct_One", 20000, 0, "USD")
    assert checks(Books([], [paid]), StripeRecords([], [payout], [made])) == []
    assert checks(Books([], [paid]), StripeRecords([], [payout], [])) == [CHECKS[6]]
    taken_back = Transfer("tr_Four", "acct_One", 20000, 20000, "USD")
    assert checks(Books([], [paid]), StripeRecords([], [payout], [taken_back])) == [CHECKS[6]]
    other = Transfer("tr_Four", "acct_Two", 19999, 0, "USD")
    [difference] = compare(Books([], [paid]), StripeRecords([], [payout], [other]))
    assert difference.subject == (
        "w4 / tr_Four: payguard 20000 USD, Stripe 19999 USD; payguard's account acct_One, "
        "Stripe's acct_Two"
    )


def test_a_reversal_recorded_is_a_reversal_on_stripe():
    failed = Withdrawal("w5", "failed", 20000, "USD", "po_Five", "acct_One", "tr_Five", "trr_Five")
    returned = Payout("po_Five", "acct_One", "failed", 20000, "USD")
    reversed_whole = Transfer("tr_Five", "acct_One", 20000, 20000, "USD")
    assert checks(Books([], [failed]), StripeRecords([], [returned], [reversed_whole])) == []
    kept = Transfer("tr_Five", "acct_One", 20000, 0, "USD")
    [difference] = compare(Books([], [failed]), StripeRecords([], [returned], [kept]))
    assert difference.subject == (
        "w5 / tr_Five: payguard reversed it (trr_Five), Stripe reversed 0 of 20000"
    )
    # Not reversed on either side yet: the database reports it (transfer_unreversed).
    unreversed = Withdrawal("w5", "failed", 20000, "USD", "po_Five", "acct_One", "tr_Five")
    assert checks(Books([], [unreversed]), StripeRecords([], [returned], [kept])) == []


def test_a_transfer_left_with_the_payee_is_not_reversed_on_stripe():
    left = Withdrawal(
        "w6", "failed", 20000, "USD", "po_Six", "acct_One", "tr_Six", left_with_payee=True
    )
    returned = Payout("po_Six", "acct_One", "failed", 20000, "USD")
    kept = Transfer("tr_Six", "acct_One", 20000, 0, "USD")
    assert checks(Books([], [left]), StripeRecords([], [returned], [kept])) == []
    # Reversed on Stripe after the money was counted as paid out: it is back on the platform.
    reversed_after = Transfer("tr_Six", "acct_One", 20000, 20000, "USD")
    [difference] = compare(Books([], [left]), StripeRecords([], [returned], [reversed_after]))
    assert difference.subject == (
        "w6 / tr_Six: payguard left it with the payee, Stripe reversed 20000"
    )


def test_a_transfer_no_withdrawal_records_is_reported_with_the_withdrawal_it_names():
    paid = Withdrawal("w4", "paid", 20000, "USD", "po_Four", "acct_One", "tr_Four")
    payout = Payout("po_Four", "acct_One", "paid", 20000, "USD", "w4")
    made = Transfer("tr_Four", "acct_One", 20000, 0, "USD", "w4")
    assert checks(Books([], [paid]), StripeRecords([], [payout], [made])) == []
    # The same withdrawal's transfer made a second time, its answer lost: unrecorded.
    lost = Transfer("tr_Lost", "acct_One", 20000, 0, "USD", "w4")
    bare = Transfer("tr_Bare", "acct_Two", 500, 100, "USD")
    [first, second] = compare(Books([], [paid]), StripeRecords([], [payout], [made, lost, bare]))
    assert (first.check, first.subject) == (
        CHECKS[8],
        "tr_Lost to acct_One (20000 USD, 0 reversed; metadata.withdrawal_id w4)",
    )
    assert (second.check, second.subject) == (
        CHECKS[8],
        "tr_Bare to acct_Two (500 USD, 100 reversed)",
    )
    # Reversed whole, it holds no money on the account.
    back = Transfer("tr_Lost", "acct_One", 20000, 20000, "USD", "w4")
    assert checks(Books([], [paid]), StripeRecords([], [payout], [made, back])) == []


def test_a_payout_no_withdrawal_records_names_the_withdrawal_its_metadata_names():
    stray = Payout("po_Stray", "acct_One", "pending", 20000, "USD", "w1")
    [difference] = compare(Books([], [WITHDRAWAL]), StripeRecords([], [PAYOUT, stray]))
    assert (difference.check, difference.subject) == (
        CHECKS[3],
        "po_Stray on acct_One (pending, 20000 USD; metadata.withdrawal_id w1)",
    )


@pytest.mark.parametrize(
    ("dispute_status", "agreeing", "differing"),
    [
        ("needs_response", "disputed", "funded"),
        ("under_review", "disputed", "released"),
        ("warning_needs_response", "disputed", "funded"),
        ("lost", "refunded", "disputed"),
        ("lost", "refunded", "released"),
        ("won", "funded", "disputed"),
        ("won", "released", "disputed"),
    ],
)
def test_a_chargeback_whose_payment_is_not_where_its_state_puts_it(
    dispute_status, agreeing, differing
):
    chargeback = Dispute("dp_One", "pi_One", "ch_One", dispute_status)
    refunded = 30000 if agreeing == "refunded" else 0
    charge = Charge("ch_One", "pi_One", "succeeded", 30000, refunded, "USD")
    payment = Payment("mp1", agreeing, 30000, "USD", "pi_One")
    assert checks(Books([payment], []), StripeRecords([charge], [], disputes=[chargeback])) == []
    other = Payment("mp1", differing, 30000, "USD", "pi_One")
    [difference] = [
        d
        for d in compare(Books([other], []), StripeRecords([charge], [], disputes=[chargeback]))
        if d.check == CHECKS[10]
    ]
    assert difference.subject == (
        f"dp_One ({dispute_status}, charge ch_One, payment intent pi_One): "
        f"payment mp1 is {differing}"
    )


def test_a_chargeback_of_a_charge_no_payment_holds():
    chargeback = Dispute("dp_Two", "pi_Two", "ch_Two", "needs_response")
    assert [
        d.subject for d in compare(Books([], []), StripeRecords([], [], disputes=[chargeback]))
    ] == [
        "dp_Two (needs_response, charge ch_Two, payment intent pi_Two): no payment holds its charge"
    ]


# -- against the database and the local Stripe ----------------------------------------------


@pytest.fixture(scope="module")
def books(database_url, stripe_test_api):
    """A clean start: Stripe forgets every object, the hold periods are lifted."""
    stripe_test_api.forget_everything()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update private.settings set value = '0' where key in "
            "('escrow_hold_seconds', 'payout_hold_seconds', 'payout_method_cool_down_seconds')"
        )


def new_payment(db, make_user, amount: int = 30000):
    homeowner, contractor = make_user(), make_user()
    project_id, milestone_id = uuid.uuid4(), uuid.uuid4()
    db.execute(
        "insert into public.projects (id, owner_id, contractor_id, title) values (%s, %s, %s, 'P')",
        (project_id, homeowner, contractor),
    )
    db.execute(
        "insert into public.project_milestones (id, project_id, position, title, amount_minor, "
        "currency) values (%s, %s, 1, 'M', %s, 'USD')",
        (milestone_id, project_id, amount),
    )
    db.execute(
        "insert into public.escrow_accounts (user_id, project_id, currency) values (%s, %s, 'USD')",
        (homeowner, project_id),
    )
    row = db.execute(
        "insert into public.milestone_payments (milestone_id, payer_id) values (%s, %s) "
        "returning id",
        (milestone_id, homeowner),
    ).fetchone()
    return row[0]


def charge(stripe_client, amount: int, payment=None) -> str:
    customer = stripe_client.v1.customers.create({"email": "payer@example.test"})
    method = stripe_client.v1.payment_methods.retrieve("pm_card_visa")
    stripe_client.v1.payment_methods.attach(method.id, {"customer": customer.id})
    intent = stripe_client.v1.payment_intents.create(
        {
            "amount": amount,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": method.id,
            "confirm": True,
            "metadata": {"milestone_payment_id": str(payment)},
        }
    )
    assert intent.status == "succeeded"
    return intent.id


def fund(client, payment, intent: str, amount: int = 30000) -> None:
    with client.as_service("payment_service") as req:
        req.rpc("fund_milestone_payment", payment, intent, amount, "USD", f"fund-{intent}")


def approved_withdrawal(db, client, make_user, stripe_client, stripe_test_api):
    """A contractor's approved withdrawal of 20000 USD to a verified connected account."""
    contractor = make_user()
    account = stripe_client.v1.accounts.create({"type": "custom", "country": "US"})
    stripe_test_api.verify_account(account.id)
    method = add_payout_method(db, contractor, account.id, f"ba_{uuid.uuid4().hex[:10]}")
    verify_account(db, account.id)
    db.execute("select tests.fund_wallet(%s, 20000)", (contractor,))
    with client.as_user(contractor, aal="aal2") as req:
        req.rpc("request_withdrawal", method, 20000, "USD", f"withdraw-{uuid.uuid4()}")
    withdrawal = db.execute(
        "select id, status::text from public.withdrawals where user_id = %s", (contractor,)
    ).fetchone()
    assert withdrawal[1] == "approved", withdrawal
    return withdrawal[0]


def paid_withdrawal(db, client, make_user, stripe_client, stripe_test_api, payout_id=None):
    """A contractor's withdrawal of 20000 USD to a verified connected account, sent through a
    transfer (recorded) and a payout on the local Stripe (unless `payout_id` is given: then
    nothing is sent) and completed; returns (withdrawal id, account id, payout id)."""
    contractor = make_user()
    account = stripe_client.v1.accounts.create({"type": "custom", "country": "US"})
    stripe_test_api.verify_account(account.id)
    method = add_payout_method(db, contractor, account.id, f"ba_{uuid.uuid4().hex[:10]}")
    verify_account(db, account.id)
    db.execute("select tests.fund_wallet(%s, 20000)", (contractor,))
    with client.as_user(contractor, aal="aal2") as req:
        req.rpc("request_withdrawal", method, 20000, "USD", f"withdraw-{uuid.uuid4()}")
    withdrawal = db.execute(
        "select id, status::text from public.withdrawals where user_id = %s", (contractor,)
    ).fetchone()
    assert withdrawal[1] == "approved", withdrawal
    if payout_id is None:
        transfer = stripe_client.v1.transfers.create(
            {"amount": 20000, "currency": "usd", "destination": account.id}
        )
        with client.as_service("payment_service") as req:
            req.rpc("record_withdrawal_transfer", withdrawal[0], transfer.id)
        payout_id = stripe_client.v1.payouts.create(
            {"amount": 20000, "currency": "usd"}, {"stripe_account": account.id}
        ).id
    with client.as_service("payment_service") as req:
        req.rpc("complete_withdrawal", withdrawal[0], payout_id, f"complete-{withdrawal[0]}")
    return withdrawal[0], account.id, payout_id


def found(admin_url, stripe_client) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for difference in reconcile_stripe(admin_url, stripe_client):
        grouped.setdefault(difference.check, []).append(difference.subject)
    return grouped


def run_cli(admin_url, local_stripe, monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_reconcile")
    monkeypatch.setenv("STRIPE_API_BASE", local_stripe.status().api_base)
    return CliRunner().invoke(app, ["reconcile", "--stripe", "--json", "--db-url", admin_url])


def test_a_real_flow_reconciles_and_every_planted_inconsistency_is_reported(
    books,
    db,
    client,
    make_user,
    admin_url,
    stripe_client,
    stripe_test_api,
    local_stripe,
    monkeypatch,
):
    payment = new_payment(db, make_user)
    fund(client, payment, charge(stripe_client, 30000, payment))
    withdrawal, _, payout = paid_withdrawal(db, client, make_user, stripe_client, stripe_test_api)
    stripe_test_api.settle_payout(payout, "paid")
    assert found(admin_url, stripe_client) == {}
    result = run_cli(admin_url, local_stripe, monkeypatch)
    assert (result.exit_code, json.loads(result.output)["differences"]) == (0, []), result.output

    # Stripe charged, payguard recorded nothing.
    stray = charge(stripe_client, 4500)
    # payguard funded a payment Stripe never charged.
    unpaid = new_payment(db, make_user)
    fund(client, unpaid, "pi_NeverCharged01")
    # Stripe charged less than the payment's amount.
    short = new_payment(db, make_user)
    fund(client, short, charge(stripe_client, 29999, short))
    # Stripe refunded a charge whose payment payguard still holds.
    held = new_payment(db, make_user)
    held_intent = charge(stripe_client, 30000, held)
    fund(client, held, held_intent)
    stripe_client.v1.refunds.create({"payment_intent": held_intent})
    # payguard refunded a payment (a dispute decided for the payer) whose charge Stripe did not
    # refund.
    unrefunded = new_payment(db, make_user)
    fund(client, unrefunded, charge(stripe_client, 30000, unrefunded))
    db.execute(
        "alter table public.milestone_payments disable trigger check_milestone_payment_transition"
    )
    db.execute(
        "update public.milestone_payments set status = 'disputed' where id = %s", (unrefunded,)
    )
    db.execute(
        "update public.milestone_payments set status = 'refunded' where id = %s", (unrefunded,)
    )
    db.execute(
        "alter table public.milestone_payments enable trigger check_milestone_payment_transition"
    )
    # A chargeback Stripe opened that payguard never applied: its payment is still funded.
    charged_back = new_payment(db, make_user)
    charged_back_intent = charge(stripe_client, 30000, charged_back)
    fund(client, charged_back, charged_back_intent)
    charged_back_charge = stripe_client.v1.payment_intents.retrieve(
        charged_back_intent
    ).latest_charge.id
    chargeback = stripe_test_api.dispute(charged_back_charge)
    # A payout Stripe sent for no withdrawal, a withdrawal paid with no payout on Stripe, and
    # a withdrawal paid whose payout is still pending.
    account = stripe_client.v1.accounts.retrieve(
        opened_account(
            db.execute(
                "select a.id, a.processor_account_id_sealed from public.withdrawals as w "
                "join public.payout_methods as m on m.id = w.payout_method_id "
                "join public.processor_accounts as a "
                "on a.processor_account_id_lookup = m.processor_account_id_lookup "
                "where w.id = %s",
                (withdrawal,),
            ).fetchone()
        )
    )
    # The transfer that funds it is one no withdrawal records.
    funding = stripe_client.v1.transfers.create(
        {"amount": 100, "currency": "usd", "destination": account.id}
    )
    extra = stripe_client.v1.payouts.create(
        {"amount": 100, "currency": "usd"}, {"stripe_account": account.id}
    )
    ghost, _, _ = paid_withdrawal(
        db, client, make_user, stripe_client, stripe_test_api, payout_id="po_NeverSent01"
    )
    pending, _, pending_payout = paid_withdrawal(
        db, client, make_user, stripe_client, stripe_test_api
    )
    # A transfer payguard recorded that Stripe never made.
    unmade = approved_withdrawal(db, client, make_user, stripe_client, stripe_test_api)
    with client.as_service("payment_service") as req:
        req.rpc("record_withdrawal_transfer", unmade, "tr_NeverMade01")

    differences = found(admin_url, stripe_client)
    assert sorted(differences) == sorted(CHECKS)
    assert [s.split(" ")[0] for s in differences[CHECKS[0]]] == [
        stripe_client.v1.payment_intents.retrieve(stray).latest_charge.id
    ]
    assert differences[CHECKS[1]] == [f"{unpaid} (funded, payment intent pi_NeverCharged01)"]
    assert [s.split(":")[0] for s in differences[CHECKS[2]]] == [str(short)]
    assert [s.split(" ")[0] for s in differences[CHECKS[3]]] == [extra.id]
    assert differences[CHECKS[4]] == [f"{ghost} (paid, payout po_NeverSent01)"]
    assert differences[CHECKS[5]] == [
        f"{pending} / {pending_payout}: payguard paid, Stripe pending"
    ]
    assert differences[CHECKS[6]] == [f"{unmade} / tr_NeverMade01: Stripe has no such transfer"]
    assert differences[CHECKS[10]] == [
        f"{chargeback['id']} (needs_response, charge {charged_back_charge}, payment intent "
        f"{charged_back_intent}): payment {charged_back} is funded"
    ]
    assert [s.split(":")[0] for s in differences[CHECKS[7]]] == [f"{held} (funded)"]
    assert differences[CHECKS[8]] == [f"{funding.id} to {account.id} (100 USD, 0 reversed)"]
    assert [s.split(",")[0] for s in differences[CHECKS[9]]] == [
        f"{unrefunded} (refunded): payguard refunds 30000 USD"
    ]
    assert differences[CHECKS[9]][0].endswith(
        "Stripe refunded 0 of "
        + (
            stripe_client.v1.payment_intents.retrieve(
                db.execute(
                    "select processor_payment_intent_id from public.milestone_payments "
                    "where id = %s",
                    (unrefunded,),
                ).fetchone()[0]
            ).latest_charge.id
        )
    )

    result = run_cli(admin_url, local_stripe, monkeypatch)
    assert result.exit_code == 1
    reported = json.loads(result.output)["differences"]
    # The database's side reports the refund payguard owes for the refunded payment, too.
    assert sorted({d["check"] for d in reported}) == sorted(
        [*CHECKS, "refund owed and not confirmed"]
    )
    assert len(reported) == 12

    # Refunding the stray charge settles it.
    stripe_client.v1.refunds.create({"payment_intent": stray})
    assert CHECKS[0] not in found(admin_url, stripe_client)


def test_an_unreachable_stripe_is_a_clear_error(admin_url, monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_reconcile")
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:9")
    result = CliRunner().invoke(app, ["reconcile", "--stripe", "--db-url", admin_url])
    assert result.exit_code == 1
    assert "cannot read Stripe's records" in result.output
