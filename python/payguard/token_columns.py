"""Where processor tokens are stored: each token column, the columns beside it that hold it
sealed and its lookup, and the key of its row (the processor tokens section of
supabase/schemas/payment_methods.sql lists the same). `payguard keys rotate` and `keys status`
walk this list.

A sealed value's additional authenticated data is (table, token column, row key): the envelope
of a payment method's id names `payment_methods`, `processor_payment_method_id` and the
row's id, whichever column it is stored in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

_PAYMENT_METHOD = re.compile(r"pm_[A-Za-z0-9]{6,}")
_CUSTOMER = re.compile(r"cus_[A-Za-z0-9]{6,}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{6,}")
_EXTERNAL_ACCOUNT = re.compile(r"(?:ba|card)_[A-Za-z0-9]{6,}")


@dataclass(frozen=True)
class TokenColumn:
    """One token of public.<table>: `plain` names it (the column that held it in the clear
    before the contract migration dropped it, and still the column its envelope's additional
    authenticated data names); `sealed` (when the token is kept there, not only referred to)
    holds its envelope; `lookup` its blind index."""

    table: str
    key: str
    plain: str
    form: re.Pattern[str]
    sealed: str | None
    lookup: str

    @property
    def name(self) -> str:
        return f"{self.table}.{self.plain}"

    @property
    def relation(self) -> sql.Composable:
        return sql.Identifier("public", self.table)


TOKEN_COLUMNS: tuple[TokenColumn, ...] = (
    TokenColumn(
        "processor_customers",
        "user_id",
        "processor_customer_id",
        _CUSTOMER,
        "processor_customer_id_sealed",
        "processor_customer_id_lookup",
    ),
    TokenColumn(
        "payment_methods",
        "id",
        "processor_payment_method_id",
        _PAYMENT_METHOD,
        "processor_payment_method_id_sealed",
        "processor_payment_method_id_lookup",
    ),
    TokenColumn(
        "payment_methods",
        "id",
        "processor_customer_id",
        _CUSTOMER,
        None,
        "processor_customer_id_lookup",
    ),
    TokenColumn(
        "processor_accounts",
        "id",
        "processor_account_id",
        _ACCOUNT,
        "processor_account_id_sealed",
        "processor_account_id_lookup",
    ),
    TokenColumn(
        "payout_methods",
        "id",
        "processor_external_account_id",
        _EXTERNAL_ACCOUNT,
        "processor_external_account_id_sealed",
        "processor_external_account_id_lookup",
    ),
    TokenColumn(
        "payout_methods",
        "id",
        "processor_account_id",
        _ACCOUNT,
        None,
        "processor_account_id_lookup",
    ),
    TokenColumn(
        "funding_attempts",
        "id",
        "processor_payment_method_id",
        _PAYMENT_METHOD,
        None,
        "processor_payment_method_id_lookup",
    ),
    TokenColumn(
        "funding_attempts",
        "id",
        "processor_customer_id",
        _CUSTOMER,
        None,
        "processor_customer_id_lookup",
    ),
)

SEALED_COLUMNS = tuple(c for c in TOKEN_COLUMNS if c.sealed is not None)
