"""Where processor tokens are stored in the clear: every text, varchar, char, json and jsonb
column (domains over them too) of every table in the application's schemas, searched for
Stripe ids of the credential kinds (`pm_`, `cus_`, `acct_`, `ba_`, `card_`). `payguard keys
scan` reports each column that holds one and how many rows, never a token.

Each value is searched for an id anywhere not glued to a letter or digit before it; a JSON
value also string by string, decoded. The columns of the two forms a
token is stored in (private.sealed_token, private.token_lookup) are left out: their form is
the database's to enforce (23514), their parts are random base64url that begins like an id
about once in 100,000 envelopes, and `payguard keys rotate` opens every envelope for its row
and checks each lookup against its token, which a token stored in their place would fail.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from payguard.db import connect

# A token as Stripe writes one: its prefix, not glued to a letter or digit before it, then at
# least eight letters or digits, a capital or a digit among them. Stripe's ids have 14 or more
# random ones (all small letters about once in 200,000 ids); Stripe's words that begin like an
# id do not (`card_present`, `card_payments`). The same pattern as the database's guard of
# webhook payloads (private.holds_processor_token) and the stripe-webhook function's.
_PREFIX = r"(?<![A-Za-z0-9])(pm|cus|acct|ba|card)_"
TOKEN_PATTERN = _PREFIX + r"(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{8,}"
# The domains of the two stored forms, left out of the scan (see above).
STORED_FORMS = ("private.sealed_token", "private.token_lookup")
SCHEMAS = ("public", "private", "auth")
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


@dataclass(frozen=True)
class Finding:
    """A column that holds tokens in the clear: its table, its name and how many rows."""

    table: str
    column: str
    rows: int

    def as_dict(self) -> dict[str, object]:
        return {"table": self.table, "column": self.column, "rows": self.rows}


def scan(url: str, schemas: tuple[str, ...] = SCHEMAS) -> list[Finding]:
    """Every column of a table of `schemas` whose values hold a token in the clear."""
    findings = []
    with connect(url) as conn:
        columns = conn.execute(
            """
            select c.table_schema, c.table_name, c.column_name,
              c.domain_schema || '.' || c.domain_name,
              format_type(coalesce(nullif(ty.typbasetype, 0), ty.oid), null)
            from information_schema.columns as c
            join information_schema.tables as t
              on t.table_schema = c.table_schema and t.table_name = c.table_name
            join pg_catalog.pg_type as ty
              on ty.oid = format('%%I.%%I', c.udt_schema, c.udt_name)::regtype
            where c.table_schema = any(%s) and t.table_type = 'BASE TABLE'
              and format_type(coalesce(nullif(ty.typbasetype, 0), ty.oid), null)
                = any(%s)
            order by 1, 2, c.ordinal_position
            """,
            (list(schemas), list(TEXT_TYPES)),
        ).fetchall()
        for schema, table, column, domain, base_type in columns:
            if domain in STORED_FORMS:
                continue
            # JSON is searched as text (its keys too) and string by string, decoded: a token
            # after an escape (`\\n`) is glued to a letter in the text.
            decoded = (
                sql.SQL(
                    " or exists (select from jsonb_path_query({c}::jsonb, 'strict $.**') as i "
                    "where jsonb_typeof(i) = 'string' and i #>> '{{}}' ~ %(p)s)"
                ).format(c=sql.Identifier(column))
                if base_type in ("json", "jsonb")
                else sql.SQL("")
            )
            row = conn.execute(
                sql.SQL("select count(*) from {t} where {c}::text ~ %(p)s{d}").format(
                    t=sql.Identifier(schema, table), c=sql.Identifier(column), d=decoded
                ),
                {"p": TOKEN_PATTERN},
            ).fetchone()
            if row and row[0]:
                findings.append(Finding(f"{schema}.{table}", column, int(row[0])))
    return findings
