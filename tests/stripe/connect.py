"""Stripe Connect, as far as payguard's payouts use it, which localstripe lacks: connected
accounts, transfers from the platform to them, their balances, and payouts from their balance
to their bank (requests carrying `Stripe-Account: acct_…`).

Transfers are listed by `destination` and by `transfer_group`, as on Stripe.

Events (`account` set to the connected account where Stripe sets it): account.updated,
transfer.created, transfer.reversed, payout.created, payout.paid, payout.failed. A transfer is
reversed by POST /v1/transfers/{id}/reversals (its amount, or what is left of it, taken back
from the connected account's balance: `balance_insufficient` when the balance is short, as on
Stripe), listed by GET /v1/transfers/{id}/reversals. A payout stays `pending` until a
test settles it: POST /_test/payouts/{id}/paid or /_test/payouts/{id}/fail (a failed payout's
amount returns to the account's balance, as on Stripe). POST /_test/accounts/{id}/verify with
`outcome=verified|restricted` plays Stripe's verification of the account. An account is made
only in a country Connect supports (`country_unsupported` otherwise, as on Stripe). An
onboarding link (POST /v1/account_links) names an account, where to send the user back
(`return_url`) and where to send them for a new link (`refresh_url`); it expires after five
minutes, its `url` is not a page, and GET /_test/account_links?account=… lists the links made.
An account's external accounts (its bank accounts, where its payouts go) are read by
GET /v1/accounts/{id}/external_accounts and /v1/accounts/{id}/external_accounts/{ba_…} (404
`resource_missing` for one of another account, as on Stripe); POST
/_test/accounts/{id}/external_accounts (`currency`, `bank_name`, `last4`) plays the bank account
a contractor enters during the hosted onboarding.
"""

from __future__ import annotations

import re
from typing import Any

from localstripe.errors import UserError
from localstripe.resources import Event, List, StripeObject, random_id, store
from localstripe.webhooks import schedule_webhook
from routes import Router, as_int, require, unexpected

ACCOUNT_FIELDS = {
    "type",
    "country",
    "email",
    "business_type",
    "business_profile",
    "capabilities",
    "default_currency",
    "metadata",
    "tos_acceptance",
    "individual",
    "company",
    "external_account",
    "settings",
    "controller",
}
# The countries where Stripe Connect makes accounts (a sample: Stripe's list is longer).
CONNECT_COUNTRIES = {
    "AT",
    "AU",
    "BE",
    "CA",
    "CH",
    "DE",
    "DK",
    "ES",
    "FI",
    "FR",
    "GB",
    "IE",
    "IT",
    "JP",
    "LU",
    "MX",
    "NL",
    "NO",
    "NZ",
    "PL",
    "PT",
    "SE",
    "SG",
    "US",
}
ACCOUNT_LINK_TYPES = {"account_onboarding", "account_update"}
ACCOUNT_LINK_SECONDS = 300
OUTCOMES = {
    "verified": {"charges_enabled": True, "payouts_enabled": True, "disabled_reason": None},
    "restricted": {
        "charges_enabled": False,
        "payouts_enabled": False,
        "disabled_reason": "requirements.past_due",
    },
}


def emit(type_: str, obj: StripeObject, account: str | None = None) -> None:
    """Deliver an event as localstripe delivers its own (signed, to every webhook)."""
    event = Event(type_, obj)
    if account is not None:
        event.account = account
    schedule_webhook(event)


def listing(url: str, items: list[Any], data: dict[str, Any]) -> List:
    li = List(url, limit=data.get("limit"), starting_after=data.get("starting_after"))
    li._list = sorted(items, key=lambda item: (item.created, item.id))
    return li


class Account(StripeObject):
    object = "account"
    _id_prefix = "acct_"

    def __init__(self, **data: Any) -> None:
        unexpected(data, ACCOUNT_FIELDS)
        require(data.get("type", "custom") in ("custom", "express", "standard"))
        country = data.get("country", "US")
        require(
            country in CONNECT_COUNTRIES,
            f"Connected accounts cannot be created in {country!r}.",
            "country_unsupported",
        )
        super().__init__()
        self.type = data.get("type", "custom")
        self.country = country
        self.email = data.get("email")
        self.business_type = data.get("business_type")
        self.capabilities = {
            name: "inactive" for name in (data.get("capabilities") or {"transfers": {}})
        }
        self.default_currency = data.get("default_currency", "usd")
        self.metadata = data.get("metadata") or {}
        self.charges_enabled = False
        self.payouts_enabled = False
        self.details_submitted = False
        self.requirements = {
            "currently_due": ["external_account", "tos_acceptance.date"],
            "disabled_reason": "requirements.past_due",
        }
        self._balance: dict[str, int] = {}

    def _verify(self, outcome: str) -> None:
        require(outcome in OUTCOMES, "outcome must be verified or restricted")
        settings = OUTCOMES[outcome]
        self.charges_enabled = settings["charges_enabled"]
        self.payouts_enabled = settings["payouts_enabled"]
        self.details_submitted = True
        active = "active" if outcome == "verified" else "inactive"
        self.capabilities = dict.fromkeys(self.capabilities, active)
        self.requirements = {
            "currently_due": [] if outcome == "verified" else ["individual.verification.document"],
            "disabled_reason": settings["disabled_reason"],
        }


class AccountLink(StripeObject):
    """A single-use link to Stripe's hosted onboarding of a connected account (here: not a
    page; kept so that tests can see what was asked)."""

    object = "account_link"
    _id_prefix = "acctlink_"

    def __init__(self, **data: Any) -> None:
        unexpected(
            data, {"account", "refresh_url", "return_url", "type", "collect", "collection_options"}
        )
        account = find_account(str(data.get("account")))
        require(
            data.get("type") in ACCOUNT_LINK_TYPES,
            "type must be account_onboarding or account_update",
        )
        for name in ("refresh_url", "return_url"):
            url = data.get(name)
            require(
                isinstance(url, str) and re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url) is not None,
                f"Not a valid URL: {name}",
                "url_invalid",
            )
        super().__init__()
        self.account = account.id
        self.type = data["type"]
        self.refresh_url = data["refresh_url"]
        self.return_url = data["return_url"]
        self.expires_at = self.created + ACCOUNT_LINK_SECONDS
        self.url = f"https://connect.stripe.test/setup/{self.id}"

    def _export(self, expand: Any = None) -> dict[str, Any]:
        return {
            "object": "account_link",
            "created": self.created,
            "expires_at": self.expires_at,
            "url": self.url,
        }


def find_account(account_id: str) -> Account:
    obj = store.get(f"account:{account_id}")
    if not isinstance(obj, Account):
        raise UserError(404, f"No such account: '{account_id}'", {"code": "resource_missing"})
    return obj


class Transfer(StripeObject):
    object = "transfer"
    _id_prefix = "tr_"

    def __init__(self, **data: Any) -> None:
        unexpected(
            data,
            {
                "amount",
                "currency",
                "destination",
                "metadata",
                "description",
                "transfer_group",
                "source_transaction",
            },
        )
        amount = as_int(data.get("amount"))
        require(amount is not None and amount > 0, "amount must be a positive integer")
        currency = data.get("currency")
        require(isinstance(currency, str) and len(currency) == 3, "currency is required")
        destination = find_account(str(data.get("destination")))
        super().__init__()
        self.amount = amount
        self.amount_reversed = 0
        self.currency = currency.lower()
        self.destination = destination.id
        self.destination_payment = f"py_{random_id(24)}"
        self.balance_transaction = f"txn_{random_id(24)}"
        self.description = data.get("description")
        self.metadata = data.get("metadata") or {}
        self.reversed = False
        self.source_transaction = data.get("source_transaction")
        self.transfer_group = data.get("transfer_group")
        destination._balance[self.currency] = destination._balance.get(self.currency, 0) + amount


class TransferReversal(StripeObject):
    """A reversal of (part of) a transfer: the amount goes back from the connected account's
    balance to the platform's."""

    object = "transfer_reversal"
    _id_prefix = "trr_"

    def __init__(self, transfer: Transfer, **data: Any) -> None:
        unexpected(data, {"amount", "metadata", "description", "refund_application_fee"})
        left = transfer.amount - transfer.amount_reversed
        amount = left if data.get("amount") is None else as_int(data.get("amount"))
        require(left > 0, "This transfer has already been fully reversed.", "transfer_reversed")
        require(
            amount is not None and 0 < amount <= left,
            "amount must be a positive integer, at most what is left of the transfer",
        )
        assert amount is not None
        destination = find_account(transfer.destination)
        require(
            destination._balance.get(transfer.currency, 0) >= amount,
            "Insufficient funds in the connected account's balance to reverse this transfer.",
            "balance_insufficient",
        )
        super().__init__()
        self.amount = amount
        self.currency = transfer.currency
        self.transfer = transfer.id
        self.balance_transaction = f"txn_{random_id(24)}"
        self.destination_payment_refund = f"pyr_{random_id(24)}"
        self.metadata = data.get("metadata") or {}
        destination._balance[transfer.currency] -= amount
        transfer.amount_reversed += amount
        transfer.reversed = transfer.amount_reversed == transfer.amount


class ConnectedPayout(StripeObject):
    """A payout from a connected account's balance (stored apart from the platform's own
    payouts, which localstripe serves)."""

    object = "connected_payout"
    _id_prefix = "po_"

    def __init__(self, account_id: str, **data: Any) -> None:
        unexpected(
            data,
            {
                "amount",
                "currency",
                "metadata",
                "description",
                "method",
                "statement_descriptor",
                "destination",
            },
        )
        owner = find_account(account_id)
        amount = as_int(data.get("amount"))
        require(amount is not None and amount > 0, "amount must be a positive integer")
        currency = data.get("currency")
        require(isinstance(currency, str) and len(currency) == 3, "currency is required")
        currency = currency.lower()
        require(
            owner.payouts_enabled,
            "Payouts are not enabled for this account.",
            "payouts_not_allowed",
        )
        require(
            owner._balance.get(currency, 0) >= amount,
            "You have insufficient funds in your Stripe account for this transfer.",
            "balance_insufficient",
        )
        # A destination names one of the account's own external accounts (404 otherwise).
        destination = data.get("destination")
        if destination is not None:
            find_external_account(owner.id, str(destination))
        super().__init__()
        self.account = owner.id
        self.amount = amount
        self.currency = currency
        self.arrival_date = self.created + 2 * 86400
        self.automatic = False
        self.balance_transaction = f"txn_{random_id(24)}"
        self.description = data.get("description")
        self.destination = data.get("destination") or f"ba_{random_id(24)}"
        self.failure_code = None
        self.failure_message = None
        self.metadata = data.get("metadata") or {}
        self.method = data.get("method", "standard")
        self.statement_descriptor = data.get("statement_descriptor")
        self.status = "pending"
        self.type = "bank_account"
        owner._balance[currency] -= amount

    def _export(self, expand: Any = None) -> dict[str, Any]:
        exported = super()._export(expand=expand)
        exported["object"] = "payout"
        del exported["account"]
        return exported

    def _settle(self, status: str, failure_code: str | None = None) -> None:
        require(self.status in ("pending", "in_transit"), f"the payout is already {self.status}")
        self.status = status
        if status == "failed":
            self.failure_code = failure_code or "account_closed"
            self.failure_message = "The bank account has been closed."
            owner = find_account(self.account)
            owner._balance[self.currency] = owner._balance.get(self.currency, 0) + self.amount
        emit(f"payout.{status}", self, self.account)


class ExternalAccount(StripeObject):
    """A bank account of a connected account: where its payouts go."""

    object = "connected_external_account"
    _id_prefix = "ba_"

    def __init__(self, account_id: str, **data: Any) -> None:
        unexpected(data, {"currency", "bank_name", "last4", "country", "metadata"})
        owner = find_account(account_id)
        last4 = str(data.get("last4") or "6789")
        require(re.fullmatch(r"[0-9]{4}", last4) is not None, "last4 must be four digits")
        super().__init__()
        self.account = owner.id
        self.currency = str(data.get("currency") or owner.default_currency).lower()
        self.bank_name = str(data.get("bank_name") or "STRIPE TEST BANK")
        self.last4 = last4
        self.country = str(data.get("country") or owner.country)
        self.default_for_currency = True
        self.status = "new"
        self.metadata = data.get("metadata") or {}

    def _export(self, expand: Any = None) -> dict[str, Any]:
        exported = super()._export(expand=expand)
        exported["object"] = "bank_account"
        return exported


def find_external_account(account_id: str, external_id: str) -> ExternalAccount:
    obj = store.get(f"connected_external_account:{external_id}")
    if not isinstance(obj, ExternalAccount) or obj.account != account_id:
        raise UserError(
            404, f"No such external account: '{external_id}'", {"code": "resource_missing"}
        )
    return obj


def find_payout(payout_id: str, account_id: str | None) -> ConnectedPayout:
    obj = store.get(f"connected_payout:{payout_id}")
    if not isinstance(obj, ConnectedPayout) or (account_id and obj.account != account_id):
        raise UserError(404, f"No such payout: '{payout_id}'", {"code": "resource_missing"})
    return obj


# -- handlers ---------------------------------------------------------------------------------


def create_account(data: dict[str, Any], account: str | None) -> Account:
    created = Account(**data)
    emit("account.updated", created)
    return created


def retrieve_account(data: dict[str, Any], account: str | None, id: str) -> Account:
    return find_account(id)


def update_account(data: dict[str, Any], account: str | None, id: str) -> Account:
    found = find_account(id)
    unexpected(data, {"metadata", "email", "business_profile", "settings", "capabilities"})
    found._update(**{k: v for k, v in data.items() if k != "capabilities"})
    emit("account.updated", found, found.id)
    return found


def list_accounts(data: dict[str, Any], account: str | None) -> List:
    items = [v for k, v in store.items() if k.startswith("account:")]
    return listing("/v1/accounts", items, data)


def create_account_link(data: dict[str, Any], account: str | None) -> AccountLink:
    require(account is None, "account links are made by the platform, without Stripe-Account")
    return AccountLink(**data)


def list_account_links(data: dict[str, Any], account: str | None) -> dict[str, Any]:
    """The links made (for tests), oldest first: what each was asked with."""
    named = data.get("account")
    links = sorted(
        (
            v
            for k, v in store.items()
            if k.startswith("account_link:") and named in (None, v.account)
        ),
        key=lambda link: (link.created, link.id),
    )
    return {
        "object": "list",
        "data": [
            {
                "account": link.account,
                "type": link.type,
                "refresh_url": link.refresh_url,
                "return_url": link.return_url,
                "url": link.url,
                "expires_at": link.expires_at,
            }
            for link in links
        ],
    }


def verify_account(data: dict[str, Any], account: str | None, id: str) -> Account:
    found = find_account(id)
    found._verify(str(data.get("outcome", "verified")))
    emit("account.updated", found, found.id)
    return found


def create_external_account(data: dict[str, Any], account: str | None, id: str) -> ExternalAccount:
    return ExternalAccount(id, **data)


def retrieve_external_account(
    data: dict[str, Any], account: str | None, id: str, external_id: str
) -> ExternalAccount:
    find_account(id)
    return find_external_account(id, external_id)


def list_external_accounts(data: dict[str, Any], account: str | None, id: str) -> List:
    find_account(id)
    items = [
        v
        for k, v in store.items()
        if k.startswith("connected_external_account:") and v.account == id
    ]
    return listing(f"/v1/accounts/{id}/external_accounts", items, data)


def create_transfer(data: dict[str, Any], account: str | None) -> Transfer:
    require(account is None, "transfers are made by the platform, without Stripe-Account")
    created = Transfer(**data)
    emit("transfer.created", created)
    return created


def retrieve_transfer(data: dict[str, Any], account: str | None, id: str) -> Transfer:
    obj = store.get(f"transfer:{id}")
    if not isinstance(obj, Transfer):
        raise UserError(404, f"No such transfer: '{id}'", {"code": "resource_missing"})
    return obj


def list_transfers(data: dict[str, Any], account: str | None) -> List:
    destination = data.get("destination")
    group = data.get("transfer_group")
    items = [
        v
        for k, v in store.items()
        if k.startswith("transfer:")
        and destination in (None, v.destination)
        and group in (None, v.transfer_group)
    ]
    return listing("/v1/transfers", items, data)


def reversals_of(transfer: Transfer) -> list[TransferReversal]:
    return [
        v
        for k, v in store.items()
        if k.startswith("transfer_reversal:") and v.transfer == transfer.id
    ]


def create_reversal(data: dict[str, Any], account: str | None, id: str) -> TransferReversal:
    require(account is None, "reversals are made by the platform, without Stripe-Account")
    transfer = retrieve_transfer({}, None, id)
    created = TransferReversal(transfer, **data)
    emit("transfer.reversed", transfer)
    return created


def list_reversals(data: dict[str, Any], account: str | None, id: str) -> List:
    transfer = retrieve_transfer({}, None, id)
    return listing(f"/v1/transfers/{id}/reversals", reversals_of(transfer), data)


def create_payout(data: dict[str, Any], account: str) -> ConnectedPayout:
    created = ConnectedPayout(account, **data)
    emit("payout.created", created, account)
    return created


def retrieve_payout(data: dict[str, Any], account: str, id: str) -> ConnectedPayout:
    return find_payout(id, account)


def list_payouts(data: dict[str, Any], account: str) -> List:
    find_account(account)
    items = [
        v for k, v in store.items() if k.startswith("connected_payout:") and v.account == account
    ]
    return listing("/v1/payouts", items, data)


def balance(data: dict[str, Any], account: str) -> dict[str, Any]:
    owner = find_account(account)
    return {
        "object": "balance",
        "livemode": False,
        "available": [{"amount": a, "currency": c} for c, a in sorted(owner._balance.items())],
        "pending": [],
    }


def settle_payout(
    data: dict[str, Any], account: str | None, id: str, outcome: str
) -> ConnectedPayout:
    payout = find_payout(id, None)
    if outcome == "paid":
        payout._settle("paid")
    else:
        payout._settle("failed", data.get("failure_code"))
    return payout


def register(router: Router) -> None:
    router.add("POST", "/v1/accounts", create_account)
    router.add("GET", "/v1/accounts", list_accounts)
    router.add("GET", "/v1/accounts/{id}", retrieve_account)
    router.add("POST", "/v1/accounts/{id}", update_account)
    router.add("GET", "/v1/accounts/{id}/external_accounts", list_external_accounts)
    router.add(
        "GET", "/v1/accounts/{id}/external_accounts/{external_id}", retrieve_external_account
    )
    router.add("POST", "/_test/accounts/{id}/external_accounts", create_external_account)
    router.add("POST", "/v1/transfers", create_transfer)
    router.add("GET", "/v1/transfers", list_transfers)
    router.add("GET", "/v1/transfers/{id}", retrieve_transfer)
    router.add("POST", "/v1/transfers/{id}/reversals", create_reversal)
    router.add("GET", "/v1/transfers/{id}/reversals", list_reversals)
    router.add("POST", "/v1/payouts", create_payout, connected=True)
    router.add("GET", "/v1/payouts", list_payouts, connected=True)
    router.add("GET", "/v1/payouts/{id}", retrieve_payout, connected=True)
    router.add("GET", "/v1/balance", balance, connected=True)
    router.add("POST", "/v1/account_links", create_account_link)
    router.add("GET", "/_test/account_links", list_account_links)
    router.add("POST", "/_test/accounts/{id}/verify", verify_account)
    router.add("POST", "/_test/payouts/{id}/{outcome:paid|fail}", settle_payout)
