"""Which domain creates which object: the `create` statements of each schema file, read with
payguard.sql_split. An object's domain is the schema file whose statements create it (the
first such file, when several do)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from payguard.migrations import LEADING_COMMENTS
from payguard.schema.files import SchemaFile

DEFAULT_SCHEMA = "public"  # where postgres creates an unqualified name (search_path)

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_NAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_CREATE = re.compile(
    r"^create\s+(?:or\s+replace\s+)?"
    r"(?:(?:temp|temporary|unlogged|unique|materialized|constraint|recursive)\s+)*"
    r"(?P<kind>table|function|procedure|trigger|policy|index|view|type|domain)\s+"
    r"(?:concurrently\s+)?(?:if\s+not\s+exists\s+)?"
    rf"(?P<name>{_NAME})",
    re.IGNORECASE,
)
_ON_TABLE = re.compile(rf"\bon\s+(?:only\s+)?(?P<table>{_NAME})", re.IGNORECASE)
_KINDS = {"procedure": "function", "domain": "type"}


@dataclass(frozen=True)
class Created:
    """An object a schema file creates: its kind and its normalized, qualified name (for a
    trigger, policy or index: schema, table, name)."""

    kind: str  # table | view | function | trigger | policy | index | type
    name: tuple[str, ...]


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier.lower()


def split_name(text: str) -> tuple[str, str]:
    """(schema, name) of a possibly qualified, possibly quoted name."""
    parts = [_unquote(p) for p in re.findall(_IDENT, text)]
    if len(parts) == 1:
        return DEFAULT_SCHEMA, parts[0]
    return parts[0], parts[1]


def created_objects(statement: str) -> Created | None:
    """The object a `create` statement makes, if it is one that the schema dump places."""
    text = LEADING_COMMENTS.sub("", statement, count=1)
    match = _CREATE.match(text)
    if match is None:
        return None
    kind = _KINDS.get(match["kind"].lower(), match["kind"].lower())
    raw_name = match["name"]
    if kind in ("trigger", "policy", "index"):
        if kind == "index" and raw_name.lower() == "on":
            return None  # an unnamed index: PostgreSQL picks its name
        on = _ON_TABLE.search(text, match.end())
        if on is None:
            return None
        schema, table = split_name(on["table"])
        return Created(kind, (schema, table, _unquote(raw_name)))
    return Created(kind, split_name(raw_name))


def domain_map(files: list[SchemaFile]) -> dict[Created, str]:
    """Every object the files create, with the domain (file stem) of the first that does."""
    found: dict[Created, str] = {}
    for schema_file in files:
        for statement in schema_file.statements:
            created = created_objects(statement.text)
            if created is not None and created not in found:
                found[created] = schema_file.domain
    return found
