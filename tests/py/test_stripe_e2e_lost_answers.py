"""Stripe's answer lost, end to end: the served `payouts` function reaches the local Stripe
through a proxy that lets Stripe carry a request out and then closes the connection without its
answer (payguard.testing.lossy_proxy), as a network cut or a timeout does. Webhooks are held in
a sink and passed on to the served `stripe-webhook` when each test wants.

A transfer made whose answer was lost is recorded nowhere by the answer, but its request was
recorded before Stripe was asked: a withdrawal canceled meanwhile keeps its money reserved, the
next run finds the transfer and takes it back, and `reconcile --stripe` reports it until then.
A payout the connected account's owner makes naming the withdrawal moves nothing, and an
unrelated payout on the account is ignored, without an inconsistency. A reversal Stripe refuses
for good is not tried on every run: it waits, until operations leave the transfer with the
payee."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from payguard.jwt import api_key
from payguard.stripe_reconcile import reconcile_stripe
from payguard.testing.local_stack import FunctionsClient
from payguard.testing.lossy_proxy import LossyProxy, lossy_proxy
from payguard.testing.stripe_flow import Border, Flow, Stage

AMOUNT = 600_000


@pytest.fixture(scope="module")
def cut(stage, serve_functions, database, stripe_test_api) -> Iterator[tuple[LossyProxy, Any]]:
    """The payouts function served again, reaching Stripe through a lossy proxy."""
    with lossy_proxy(stripe_test_api.api_base) as proxy:
        functions = serve_functions(
            database, names=["payouts"], extra_env={"STRIPE_API_BASE": proxy.url}
        )
        yield proxy, FunctionsClient(functions)


def approved(stage: Stage) -> Flow:
    flow = Flow(stage.border)
    flow.parties()
    stage.ready_to_withdraw(flow, AMOUNT)
    flow.withdraw()
    flow.approve()
    assert stage.border.withdrawal_status(flow.ids["withdrawal"]) == "approved"
    return flow


def pay_out(functions: Any, withdrawal: uuid.UUID) -> Any:
    return functions.call(
        "payouts", {"withdrawal_id": str(withdrawal)}, token=api_key("service_role")
    )


def transfers_to(stripe_client: Any, account: str) -> list[Any]:
    return [
        t
        for t in stripe_client.v1.transfers.list({"limit": 100}).auto_paging_iter()
        if t.destination == account
    ]


def lose_the_transfer(proxy: LossyProxy, functions: Any, withdrawal: uuid.UUID) -> None:
    """A payouts run whose transfer Stripe makes and whose answer is lost."""
    proxy.lose("POST", "/v1/transfers", times=3)
    try:
        answer = pay_out(functions, withdrawal)
    finally:
        proxy.answer_all()
    assert answer.status == 502, answer.body
    [result] = answer.body["results"]
    assert (result["stage"], result["code"]) == ("transfer", "processor_unavailable"), result


def cancel(border: Border, withdrawal: uuid.UUID) -> None:
    admin = border.make_user(f"ops-{uuid.uuid4().hex[:6]}", "admin")
    with border.user_request(admin, role="admin") as req:
        req.execute(
            "update public.withdrawals set status = 'canceled', "
            "failure_reason = 'Contractor asked us to hold this payout' where id = %s",
            (withdrawal,),
        )


def test_a_lost_transfer_answer_then_a_cancel_keeps_the_money_until_the_transfer_is_taken_back(
    stage, cut, stripe_client
):
    proxy, functions = cut
    border = stage.border
    flow = approved(stage)
    withdrawal, account = flow.ids["withdrawal"], flow.ids["account"]
    contractor = flow.ids["contractor"]
    lose_the_transfer(proxy, functions, withdrawal)
    [made] = transfers_to(stripe_client, account)
    assert made.amount == AMOUNT, "Stripe made the transfer"
    assert proxy.lost, "its answer was lost"

    cancel(border, withdrawal)
    assert border.withdrawal_status(withdrawal) == "canceled"
    wallet = border.wallet(contractor)
    assert (wallet["reserved_minor"], wallet["withdrawable_minor"]) == (AMOUNT, 0), (
        "the transfer may exist: the money stays reserved"
    )
    reported = [d for d in reconcile_stripe(stage.admin_url, stripe_client) if made.id in d.subject]
    assert [(d.check, str(withdrawal) in d.subject) for d in reported] == [
        ("transfer with no withdrawal", True)
    ], reported

    # The next run finds the transfer, records it on the canceled withdrawal and reverses it.
    answer = pay_out(functions, withdrawal)
    assert answer.status == 200, answer.body
    assert [(r["status"], r["transfer_id"]) for r in answer.body["results"]] == [
        ("transfer_found", made.id),
        ("reversed", made.id),
    ]
    assert stripe_client.v1.transfers.retrieve(made.id).amount_reversed == AMOUNT
    wallet = border.wallet(contractor)
    assert (wallet["reserved_minor"], wallet["withdrawable_minor"]) == (0, AMOUNT), wallet
    assert [
        d for d in reconcile_stripe(stage.admin_url, stripe_client) if made.id in d.subject
    ] == []
    stage.assert_ledger_reconciles()


def test_a_lost_transfer_answer_is_found_by_the_next_run_and_paid_out_once(
    stage, cut, stripe_client
):
    proxy, functions = cut
    border = stage.border
    flow = approved(stage)
    withdrawal, account = flow.ids["withdrawal"], flow.ids["account"]
    lose_the_transfer(proxy, functions, withdrawal)
    [made] = transfers_to(stripe_client, account)

    answer = pay_out(functions, withdrawal)
    assert answer.status == 200, answer.body
    [result] = answer.body["results"]
    assert (result["status"], result["transfer_id"]) == ("sent", made.id)
    assert [t.id for t in transfers_to(stripe_client, account)] == [made.id], "one transfer"
    assert border.withdrawal_status(withdrawal) == "processing"
    border.stripe_api.settle_payout(result["payout_id"], "paid")
    paid = stage.deliver(stage.captured("payout.paid", result["payout_id"]))
    assert paid["status"] == "processed", paid
    assert border.withdrawal_status(withdrawal) == "paid"
    stage.assert_ledger_reconciles()


def test_the_account_owners_payout_naming_the_withdrawal_moves_nothing(stage, cut, stripe_client):
    proxy, functions = cut
    border = stage.border
    flow = approved(stage)
    withdrawal, account = flow.ids["withdrawal"], flow.ids["account"]
    contractor = flow.ids["contractor"]
    lose_the_transfer(proxy, functions, withdrawal)

    # The owner pays the transferred money out themselves, naming the withdrawal, to a bank
    # account that bounces it (a Standard account's owner can, with their own key).
    own = stripe_client.v1.payouts.create(
        {"amount": AMOUNT, "currency": "usd", "metadata": {"withdrawal_id": str(withdrawal)}},
        {"stripe_account": account},
    )
    border.stripe_api.settle_payout(own.id, "fail")
    failed = stage.deliver(stage.captured("payout.failed", own.id))
    assert failed["status"] == "ignored", failed
    assert border.withdrawal_status(withdrawal) == "approved", "an event never moves it"
    assert (
        border.scalar(
            "select processor_payout_id from public.withdrawals where id = %s", (withdrawal,)
        )
        is None
    )
    assert border.wallet(contractor)["withdrawable_minor"] == 0
    assert stage.open_inconsistencies(own.id) == []

    # Any other payout on the account (of money of the owner's own) is ignored too, and opens
    # no inconsistency.
    stripe_client.v1.transfers.create({"amount": 100, "currency": "usd", "destination": account})
    other = stripe_client.v1.payouts.create(
        {"amount": 100, "currency": "usd"}, {"stripe_account": account}
    )
    border.stripe_api.settle_payout(other.id, "paid")
    noise = stage.deliver(stage.captured("payout.paid", other.id))
    assert noise["status"] == "ignored", noise
    assert stage.open_inconsistencies(other.id) == []
    reported = [
        d.check for d in reconcile_stripe(stage.admin_url, stripe_client) if other.id in d.subject
    ]
    assert reported == ["payout with no withdrawal"]

    # payguard's own run finds its transfer and pays out; its payout completes the withdrawal.
    answer = pay_out(functions, withdrawal)
    assert answer.status == 200, answer.body
    [result] = answer.body["results"]
    assert result["status"] == "sent", result
    border.stripe_api.settle_payout(result["payout_id"], "paid")
    paid = stage.deliver(stage.captured("payout.paid", result["payout_id"]))
    assert paid["status"] == "processed", paid
    assert border.withdrawal_status(withdrawal) == "paid"
    stage.assert_ledger_reconciles()


def test_a_reversal_refused_for_good_backs_off_until_operations_leave_the_transfer_with_the_payee(
    stage, cut, stripe_client, client
):
    proxy, functions = cut
    border = stage.border
    flow = approved(stage)
    withdrawal, account = flow.ids["withdrawal"], flow.ids["account"]
    contractor = flow.ids["contractor"]
    # The payout is made, its answer lost; operations cancel the withdrawal; the bank pays it.
    proxy.lose("POST", "/v1/payouts", times=3)
    try:
        answer = pay_out(functions, withdrawal)
    finally:
        proxy.answer_all()
    assert answer.status == 502, answer.body
    assert answer.body["results"][0]["stage"] == "payout", answer.body
    [payout] = stripe_client.v1.payouts.list({"limit": 10}, {"stripe_account": account}).data
    cancel(border, withdrawal)
    border.stripe_api.settle_payout(payout.id, "paid")
    paid = stage.deliver(stage.captured("payout.paid", payout.id))
    assert paid["status"] == "ignored", paid

    def mine(run: Any) -> list[tuple[str, str | None]]:
        return [
            (r["status"], r.get("code"))
            for r in run.body["results"]
            if r["withdrawal_id"] == str(withdrawal)
        ]

    every = {"token": api_key("service_role")}
    first = functions.call("payouts", {}, **every)
    assert mine(first) == [("failed", "balance_insufficient")], first.body
    assert mine(functions.call("payouts", {}, **every)) == [], "the next run leaves it be"
    reported = [
        d.subject
        for d in reconcile_stripe(stage.admin_url, stripe_client)
        if payout.id in d.subject
    ]
    assert len(reported) == 1, reported
    assert str(withdrawal) in reported[0], "it names the withdrawal its metadata names"

    admin = border.make_user(f"ops-{uuid.uuid4().hex[:6]}", "admin")
    with client.as_user(admin, aal="aal2", role="admin") as req:
        req.rpc(
            "leave_transfer_with_payee",
            withdrawal,
            "The bank paid the payout to the contractor; the transfer stays with them.",
        )
    wallet = border.wallet(contractor)
    assert (wallet["posted_minor"], wallet["reserved_minor"]) == (0, 0), wallet
    assert mine(functions.call("payouts", {}, **every)) == []
    stage.assert_ledger_reconciles()
