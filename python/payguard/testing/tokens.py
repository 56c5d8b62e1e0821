"""Processor tokens in the Python tests, as the functions store them: a fixture's connected
account and payout method are written sealed for their rows, with their lookups, under the
keys of the environment (tests/py/conftest.py puts the served functions' keys there)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from payguard.envelope import KEYS_VARIABLE, KeySet, decrypt, encrypt
from payguard.token_index import INDEX_KEYS_VARIABLE, lookup


def envelope_keys() -> KeySet:
    return KeySet.from_environment(variable=KEYS_VARIABLE)


def index_keys() -> KeySet:
    return KeySet.from_environment(variable=INDEX_KEYS_VARIABLE)


def lookup_of(token: str) -> str:
    """`token`'s lookup under the current index key."""
    return lookup(index_keys(), token)


def record_account(conn: psycopg.Connection[Any], user: Any, account: str) -> uuid.UUID:
    """`account` recorded as `user`'s connected account, sealed, as payout-accounts records
    it (the row that exists already, by its lookup, is kept); its row id."""
    found = conn.execute(
        "select id from public.processor_accounts where processor_account_id_lookup = %s",
        (lookup_of(account),),
    ).fetchone()
    if found is not None:
        return uuid.UUID(str(found[0]))
    row_id = uuid.uuid4()
    sealed = encrypt(
        envelope_keys(),
        account,
        table="processor_accounts",
        column="processor_account_id",
        row_id=str(row_id),
    )
    conn.execute(
        "insert into public.processor_accounts "
        "(id, user_id, processor_account_id_sealed, processor_account_id_lookup) "
        "values (%s, %s, %s, %s)",
        (row_id, user, Jsonb(sealed), lookup_of(account)),
    )
    return row_id


def add_payout_method(
    conn: psycopg.Connection[Any],
    user: Any,
    account: str,
    external: str,
    currency: str = "USD",
) -> uuid.UUID:
    """A payout method of `user` paying out to `external` on `account` (recorded first), as
    the payout-methods function adds it; its id."""
    record_account(conn, user, account)
    method = uuid.uuid4()
    sealed = encrypt(
        envelope_keys(),
        external,
        table="payout_methods",
        column="processor_external_account_id",
        row_id=str(method),
    )
    conn.execute(
        "insert into public.payout_methods (id, user_id, type, currency, "
        "processor_external_account_id_sealed, processor_external_account_id_lookup, "
        "processor_account_id_lookup) values (%s, %s, 'bank_account', %s, %s, %s, %s)",
        (method, user, currency, Jsonb(sealed), lookup_of(external), lookup_of(account)),
    )
    return method


def verify_account(conn: psycopg.Connection[Any], account: str) -> None:
    """The processor's verification of `account`, as account.updated records it."""
    found = lookup_of(account)
    conn.execute(
        "update public.processor_accounts set verification_status = 'verified' "
        "where processor_account_id_lookup = %s",
        (found,),
    )
    conn.execute(
        "update public.payout_methods set verification_status = 'verified' "
        "where processor_account_id_lookup = %s",
        (found,),
    )


def opened_account(row: Any) -> str:
    """The Stripe id of a processor_accounts row read as (id, processor_account_id_sealed)."""
    row_id, sealed = row
    return decrypt(
        envelope_keys(),
        sealed,
        table="processor_accounts",
        column="processor_account_id",
        row_id=str(row_id),
    )
