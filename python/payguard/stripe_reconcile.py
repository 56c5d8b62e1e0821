"""`payguard reconcile --stripe`: do payguard's books and Stripe's records agree?

Stripe's side is read with stripe-python (charges, transfers, connected accounts and their
payouts), payguard's from the database, in one read-only snapshot; `compare` then lists every
difference:
- a succeeded charge with no funded payment (one not fully refunded: a charge the database
  refused and that was refunded is settled);
- a funded payment with no succeeded charge on Stripe;
- a payment whose charge differs in amount or currency;
- a payment payguard still holds (funded, disputed or released) whose charge Stripe refunded,
  in full or in part: the payer has (some of) the money back while the escrow still counts it;
- a payment payguard refunded (a dispute resolved as a refund) whose charge Stripe has not
  refunded by its amount, or split whose charge Stripe has not refunded by the payer's share
  (a chargeback that the card issuer decided is not a refund: the issuer took the money back);
- a payout on Stripe with no withdrawal, a withdrawal in processing or paid with no payout on
  Stripe, and a payout whose amount, currency or outcome differs from its withdrawal's;
- a withdrawal's recorded transfer that Stripe does not have, or whose amount, currency or
  connected account differs, that payguard recorded as reversed while Stripe did not reverse
  it whole, or that Stripe reversed while the withdrawal is still being paid out or paid, or
  after operations left it with the payee (its money counted as paid out).
  (A withdrawal that ended unpaid whose transfer is not reversed yet is reported by the
  database's own checks, as an open `transfer_unreversed` inconsistency.)
- a transfer on Stripe that no withdrawal records and that Stripe has not reversed whole (a
  transfer made whose answer was lost, or made twice), naming the withdrawal its
  `metadata.withdrawal_id` names. Payouts that no withdrawal records name theirs too.
- a chargeback (a Stripe dispute) whose payment is not where its state puts it: disputed
  while the chargeback is open, refunded once it is lost, no longer disputed once it is won.

The database names a withdrawal's connected account by its lookup alone (a token is sealed:
docs/token-envelopes.md). The connected accounts Stripe lists are looked up under the index
keys given (never the envelope keys: reconciling opens no token), and each withdrawal is
compared with the account whose lookup it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import stripe

from payguard.db import connect
from payguard.envelope import KeySet
from payguard.errors import PayguardError
from payguard.reconcile import Difference
from payguard.token_index import INDEX_KEYS_VARIABLE, lookups

# A payment in these states has been funded once: its charge must exist and have succeeded.
FUNDED_STATES = ("funded", "disputed", "released", "refunded", "split")
# A withdrawal in these states has had its payout sent.
PAID_OUT_STATES = ("processing", "paid")
# A payout in these states moved, or is moving, money.
LIVE_PAYOUT_STATES = ("pending", "in_transit", "paid")
NOT_FOUND = 404

CHECKS = (
    "charge with no funded payment",
    "funded payment with no succeeded charge",
    "charge and payment differ",
    "payout with no withdrawal",
    "withdrawal paid out with no payout",
    "payout and withdrawal differ",
    "transfer and withdrawal differ",
    "payment held with its charge refunded",
    "transfer with no withdrawal",
    "refund and payment differ",
    "chargeback and payment differ",
)
# A payment in these states still holds its charge's money: a charge refunded in full means
# the money is counted twice.
HELD_STATES = ("funded", "disputed", "released")
# A withdrawal in these states still pays its transfer out, or has: it must not be reversed.
TRANSFER_KEPT_STATES = ("approved", "processing", "paid")


@dataclass(frozen=True)
class Payment:
    id: str
    status: str
    amount_minor: int
    currency: str
    payment_intent_id: str | None
    # What payguard gave the payer back by a refund (refunded: the whole amount, split: the
    # payer's share); None when no refund is owed (a chargeback took the money back instead).
    payer_refund_minor: int | None = None


@dataclass(frozen=True)
class Withdrawal:
    id: str
    status: str
    amount_minor: int
    currency: str
    payout_id: str | None
    account_id: str | None
    transfer_id: str | None = None
    reversal_id: str | None = None
    # An admin left the unreversed transfer with the payee: its money counts as paid out.
    left_with_payee: bool = False


@dataclass(frozen=True)
class Charge:
    id: str
    payment_intent_id: str | None
    status: str
    amount: int
    amount_refunded: int
    currency: str


@dataclass(frozen=True)
class Payout:
    id: str
    account_id: str
    status: str
    amount: int
    currency: str
    # The withdrawal its metadata names, if any (anyone who makes payouts on the account can).
    withdrawal_id: str | None = None


@dataclass(frozen=True)
class Transfer:
    id: str
    destination: str | None
    amount: int
    amount_reversed: int
    currency: str
    # The withdrawal its metadata names, if any.
    withdrawal_id: str | None = None


@dataclass(frozen=True)
class Dispute:
    """A chargeback at Stripe."""

    id: str
    payment_intent_id: str | None
    charge_id: str | None
    status: str


# A chargeback in these states is open: its payment must be disputed.
OPEN_DISPUTE_STATES = (
    "warning_needs_response",
    "warning_under_review",
    "needs_response",
    "under_review",
)
# Decided for the payer: the money went back to them, the payment must be refunded.
LOST_DISPUTE_STATES = ("lost", "charge_refunded")
# Decided for the platform: the payment is held (or was released) again, not disputed.
WON_DISPUTE_STATES = ("won", "warning_closed")


@dataclass(frozen=True)
class Books:
    payments: list[Payment]
    withdrawals: list[Withdrawal]


@dataclass(frozen=True)
class StripeRecords:
    charges: list[Charge]
    payouts: list[Payout]
    transfers: list[Transfer] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)
    # The connected accounts Stripe lists.
    accounts: list[str] = field(default_factory=list)


# Each payment, and what payguard gave its payer back by a refund: the whole amount when
# refunded (unless by a chargeback the card issuer decided, which is no refund at Stripe), the
# payer's share when split.
PAYMENTS_QUERY = (
    "select mp.id, mp.status::text, mp.amount_minor, mp.currency, "
    "mp.processor_payment_intent_id, case "
    "when mp.status = 'refunded' and not exists (select from public.disputes as d "
    "where d.milestone_payment_id = mp.id and d.processor_dispute_id is not null "
    "and d.status = 'resolved') then mp.amount_minor "
    "when mp.status = 'split' then mp.amount_minor - (select d.payee_share_minor "
    "from public.disputes as d where d.milestone_payment_id = mp.id and d.status = 'resolved' "
    "and d.outcome = 'split' order by d.resolved_at desc limit 1) end "
    "from public.milestone_payments as mp order by mp.created_at, mp.id"
)


def read_books(url: str) -> Books:
    """payguard's side, from one read-only snapshot."""
    with connect(url) as conn, conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        payments = [
            Payment(
                str(row[0]),
                str(row[1]),
                int(row[2]),
                str(row[3]),
                row[4],
                None if row[5] is None else int(row[5]),
            )
            for row in conn.execute(PAYMENTS_QUERY)
        ]
        # The transfers and their reversals, where the border's migrations recorded them.
        reversals = conn.execute(
            "select to_regclass('public.withdrawal_processor_attempts') is not null"
        ).fetchone()
        transfer_columns = (
            "w.processor_transfer_id, (select a.processor_object_id "
            "from public.withdrawal_processor_attempts as a where a.withdrawal_id = w.id "
            "and a.step = 'reversal' and a.status = 'succeeded')"
            if reversals and reversals[0]
            else "null::text, null::text"
        )
        left = conn.execute(
            "select to_regprocedure('private.transfer_left_with_payee(uuid)') is not null"
        ).fetchone()
        left_column = "private.transfer_left_with_payee(w.id)" if left and left[0] else "false"
        withdrawals = [
            Withdrawal(
                str(row[0]),
                str(row[1]),
                int(row[2]),
                str(row[3]),
                row[4],
                row[5],
                row[6],
                row[7],
                bool(row[8]),
            )
            for row in conn.execute(
                "select w.id, w.status::text, w.amount_minor, w.currency, w.processor_payout_id, "
                f"m.processor_account_id_lookup::text, {transfer_columns}, {left_column} "
                "from public.withdrawals as w "
                "left join public.payout_methods as m on m.id = w.payout_method_id "
                "order by w.created_at, w.id"
            )
        ]
    return Books(payments, withdrawals)


def read_stripe(client: stripe.StripeClient, account_ids: Iterable[str]) -> StripeRecords:
    """Stripe's side: every charge, and every payout of the connected accounts (those Stripe
    lists, and `account_ids`, the accounts payguard pays out to)."""
    charges = [
        Charge(
            id=c.id,
            payment_intent_id=_id(getattr(c, "payment_intent", None)),
            status=str(c.status),
            amount=int(c.amount),
            amount_refunded=int(getattr(c, "amount_refunded", 0) or 0),
            currency=str(c.currency).upper(),
        )
        for c in _all(client.v1.charges.list({"limit": 100}))
    ]
    accounts = set(account_ids)
    listed: set[str] = set()
    transfers: list[Transfer] = []
    try:
        listed = {a.id for a in _all(client.v1.accounts.list({"limit": 100}))}
        accounts |= listed
        transfers = [
            Transfer(
                id=t.id,
                destination=_id(getattr(t, "destination", None)),
                amount=int(t.amount),
                amount_reversed=int(getattr(t, "amount_reversed", 0) or 0),
                currency=str(t.currency).upper(),
                withdrawal_id=_metadata(t, "withdrawal_id"),
            )
            for t in _all(client.v1.transfers.list({"limit": 100}))
        ]
    except stripe.StripeError as exc:
        # A Stripe without Connect (plain localstripe): only the accounts payguard knows.
        if exc.http_status != NOT_FOUND:
            raise
    payouts = [
        Payout(
            p.id,
            account,
            str(p.status),
            int(p.amount),
            str(p.currency).upper(),
            _metadata(p, "withdrawal_id"),
        )
        for account in sorted(accounts)
        for p in _all(client.v1.payouts.list({"limit": 100}, {"stripe_account": account}))
    ]
    return StripeRecords(charges, payouts, transfers, accounts=sorted(listed))


def compare(books: Books, records: StripeRecords) -> list[Difference]:
    """Every difference between payguard's books and Stripe's records."""
    found: list[Difference] = []
    funded = {p.payment_intent_id: p for p in books.payments if p.status in FUNDED_STATES}
    succeeded: dict[str, Charge] = {}
    for charge in records.charges:
        if charge.status != "succeeded":
            continue
        if charge.payment_intent_id is not None:
            succeeded[charge.payment_intent_id] = charge
        if charge.payment_intent_id in funded or charge.amount_refunded >= charge.amount:
            continue
        found.append(
            Difference(
                CHECKS[0],
                f"{charge.id} (payment intent {charge.payment_intent_id or 'none'}, "
                f"{charge.amount} {charge.currency})",
            )
        )
    for payment in books.payments:
        if payment.status not in FUNDED_STATES:
            continue
        matched = succeeded.get(payment.payment_intent_id or "")
        if matched is None:
            found.append(
                Difference(
                    CHECKS[1],
                    f"{payment.id} ({payment.status}, payment intent "
                    f"{payment.payment_intent_id or 'none'})",
                )
            )
        elif (matched.amount, matched.currency) != (payment.amount_minor, payment.currency):
            found.append(
                Difference(
                    CHECKS[2],
                    f"{payment.id}: payguard {payment.amount_minor} {payment.currency}, "
                    f"Stripe {matched.id} {matched.amount} {matched.currency}",
                )
            )
        elif payment.status in HELD_STATES and matched.amount_refunded > 0:
            how = (
                "in full"
                if matched.amount_refunded >= matched.amount
                else f"in part, {matched.amount_refunded} of {matched.amount}"
            )
            found.append(
                Difference(
                    CHECKS[7],
                    f"{payment.id} ({payment.status}): Stripe refunded {matched.id} {how} "
                    f"({matched.amount_refunded} {matched.currency})",
                )
            )
    by_payout = {w.payout_id: w for w in books.withdrawals if w.payout_id is not None}
    payouts = {p.id: p for p in records.payouts}
    for payout in records.payouts:
        withdrawal = by_payout.get(payout.id)
        if withdrawal is None:
            if payout.status in LIVE_PAYOUT_STATES:
                found.append(
                    Difference(
                        CHECKS[3],
                        f"{payout.id} on {payout.account_id} ({payout.status}, "
                        f"{payout.amount} {payout.currency}" + _names(payout.withdrawal_id) + ")",
                    )
                )
            continue
        problems = []
        if (payout.amount, payout.currency) != (withdrawal.amount_minor, withdrawal.currency):
            problems.append(
                f"payguard {withdrawal.amount_minor} {withdrawal.currency}, "
                f"Stripe {payout.amount} {payout.currency}"
            )
        if payout.account_id != withdrawal.account_id:
            problems.append(
                f"payguard's account {withdrawal.account_id}, Stripe's {payout.account_id}"
            )
        if (payout.status == "paid") != (withdrawal.status == "paid") or (
            payout.status in ("failed", "canceled") and withdrawal.status in PAID_OUT_STATES
        ):
            problems.append(f"payguard {withdrawal.status}, Stripe {payout.status}")
        if problems:
            found.append(
                Difference(CHECKS[5], f"{withdrawal.id} / {payout.id}: " + "; ".join(problems))
            )
    for withdrawal in books.withdrawals:
        if withdrawal.status in PAID_OUT_STATES and (
            withdrawal.payout_id is None or withdrawal.payout_id not in payouts
        ):
            found.append(
                Difference(
                    CHECKS[4],
                    f"{withdrawal.id} ({withdrawal.status}, payout "
                    f"{withdrawal.payout_id or 'none'})",
                )
            )
    found.extend(_transfer_differences(books, records))
    found.extend(_unrecorded_transfers(books, records))
    found.extend(_refund_differences(books, records))
    found.extend(_dispute_differences(books, records))
    return found


def _refund_differences(books: Books, records: StripeRecords) -> list[Difference]:
    """Refunds payguard decided (a payment refunded or split) that Stripe did not make for the
    payer's amount: the ledger gave the payer money back that their card never received, or
    Stripe refunded more than payguard decided."""
    succeeded = {
        c.payment_intent_id: c
        for c in records.charges
        if c.status == "succeeded" and c.payment_intent_id is not None
    }
    found: list[Difference] = []
    for payment in books.payments:
        if payment.payer_refund_minor is None:
            continue
        charge = succeeded.get(payment.payment_intent_id or "")
        if charge is None or charge.amount_refunded == payment.payer_refund_minor:
            continue
        found.append(
            Difference(
                CHECKS[9],
                f"{payment.id} ({payment.status}): payguard refunds {payment.payer_refund_minor} "
                f"{payment.currency}, Stripe refunded {charge.amount_refunded} of {charge.id}",
            )
        )
    return found


def _transfer_differences(books: Books, records: StripeRecords) -> list[Difference]:
    transfers = {t.id: t for t in records.transfers}
    found: list[Difference] = []
    for withdrawal in books.withdrawals:
        if withdrawal.transfer_id is None:
            continue
        transfer = transfers.get(withdrawal.transfer_id)
        problems = []
        if transfer is None:
            problems.append("Stripe has no such transfer")
        else:
            if (transfer.amount, transfer.currency) != (
                withdrawal.amount_minor,
                withdrawal.currency,
            ):
                problems.append(
                    f"payguard {withdrawal.amount_minor} {withdrawal.currency}, "
                    f"Stripe {transfer.amount} {transfer.currency}"
                )
            if transfer.destination != withdrawal.account_id:
                problems.append(
                    f"payguard's account {withdrawal.account_id}, Stripe's {transfer.destination}"
                )
            if withdrawal.reversal_id is not None and transfer.amount_reversed < transfer.amount:
                problems.append(
                    f"payguard reversed it ({withdrawal.reversal_id}), Stripe reversed "
                    f"{transfer.amount_reversed} of {transfer.amount}"
                )
            if withdrawal.left_with_payee and transfer.amount_reversed > 0:
                problems.append(
                    f"payguard left it with the payee, Stripe reversed {transfer.amount_reversed}"
                )
            if withdrawal.status in TRANSFER_KEPT_STATES and transfer.amount_reversed > 0:
                problems.append(
                    f"payguard {withdrawal.status}, Stripe reversed {transfer.amount_reversed}"
                )
        if problems:
            found.append(
                Difference(
                    CHECKS[6], f"{withdrawal.id} / {withdrawal.transfer_id}: " + "; ".join(problems)
                )
            )
    return found


def _unrecorded_transfers(books: Books, records: StripeRecords) -> list[Difference]:
    """Every transfer no withdrawal records that still holds money on a connected account: a
    transfer whose answer was lost before payguard recorded it, or one made a second time."""
    recorded = {w.transfer_id for w in books.withdrawals if w.transfer_id is not None}
    return [
        Difference(
            CHECKS[8],
            f"{transfer.id} to {transfer.destination or 'no account'} ({transfer.amount} "
            f"{transfer.currency}, {transfer.amount_reversed} reversed"
            + _names(transfer.withdrawal_id)
            + ")",
        )
        for transfer in records.transfers
        if transfer.id not in recorded and transfer.amount_reversed < transfer.amount
    ]


def _names(withdrawal_id: str | None) -> str:
    return f"; metadata.withdrawal_id {withdrawal_id}" if withdrawal_id else ""


def read_disputes(client: stripe.StripeClient) -> list[Dispute]:
    """Stripe's chargebacks (none from a Stripe that serves no disputes)."""
    try:
        return [
            Dispute(
                id=d.id,
                payment_intent_id=_id(getattr(d, "payment_intent", None)),
                charge_id=_id(getattr(d, "charge", None)),
                status=str(d.status),
            )
            for d in _all(client.v1.disputes.list({"limit": 100}))
        ]
    except stripe.StripeError as exc:
        if exc.http_status != NOT_FOUND:
            raise
        return []


def _dispute_differences(books: Books, records: StripeRecords) -> list[Difference]:
    """Chargebacks whose payment is not disputed while they are open, not refunded once lost,
    still disputed once won; and chargebacks of a charge no payment holds."""
    by_intent = {p.payment_intent_id: p for p in books.payments if p.payment_intent_id}
    found: list[Difference] = []
    for dispute in records.disputes:
        payment = by_intent.get(dispute.payment_intent_id or "")
        subject = (
            f"{dispute.id} ({dispute.status}, charge {dispute.charge_id or 'none'}, "
            f"payment intent {dispute.payment_intent_id or 'none'})"
        )
        if payment is None:
            found.append(Difference(CHECKS[10], f"{subject}: no payment holds its charge"))
            continue
        if dispute.status in OPEN_DISPUTE_STATES:
            expected_ok = payment.status == "disputed"
        elif dispute.status in LOST_DISPUTE_STATES:
            expected_ok = payment.status == "refunded"
        elif dispute.status in WON_DISPUTE_STATES:
            expected_ok = payment.status != "disputed"
        else:
            expected_ok = False
        if not expected_ok:
            found.append(
                Difference(CHECKS[10], f"{subject}: payment {payment.id} is {payment.status}")
            )
    return found


def with_accounts(books: Books, accounts: Iterable[str], index_keys: KeySet) -> Books:
    """`books` with each withdrawal's account lookup replaced by the Stripe account among
    `accounts` it is the lookup of, under any of `index_keys` (one unknown stays a lookup)."""
    by_lookup = {found: account for account in accounts for found in lookups(index_keys, account)}
    return replace(
        books,
        withdrawals=[
            replace(w, account_id=by_lookup.get(w.account_id, w.account_id))
            if w.account_id is not None
            else w
            for w in books.withdrawals
        ],
    )


def reconcile_stripe(
    url: str, client: stripe.StripeClient, index_keys: KeySet | None = None
) -> list[Difference]:
    """Every difference between the database at `url` and the Stripe `client` reaches, the
    connected accounts matched by their lookups under `index_keys` (by default
    $PAYGUARD_TOKEN_INDEX_KEYS)."""
    if index_keys is None:
        index_keys = KeySet.from_environment(variable=INDEX_KEYS_VARIABLE)
    books = read_books(url)
    try:
        records = read_stripe(client, ())
        books = with_accounts(books, records.accounts, index_keys)
        records = replace(records, disputes=read_disputes(client))
    except stripe.StripeError as exc:
        raise PayguardError(f"cannot read Stripe's records: {exc}") from None
    return compare(books, records)


def _all(page: Any) -> Iterator[Any]:
    return iter(page.auto_paging_iter())


def _metadata(obj: Any, key: str) -> str | None:
    """A Stripe object's metadata value `key`, or None."""
    metadata = getattr(obj, "metadata", None)
    if metadata is None:
        return None
    value = metadata.to_dict().get(key) if hasattr(metadata, "to_dict") else None
    return str(value) if value else None


def _id(value: Any) -> str | None:
    """An expandable field's id: the string, or the expanded object's id."""
    if value is None or isinstance(value, str):
        return value
    return str(value.id)
