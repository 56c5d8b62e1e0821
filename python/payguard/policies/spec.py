"""Policy specs: one TOML file per table under policies/, validated against spec.schema.json.

A spec gives the table's RLS mode, its grants per role and its policies. Three intents expand
into standard policies, so that a reviewer reads a line rather than four policies:

- `owner = {column = "user_id", commands = [...]}`: users reach only their own rows;
- `mfa = [...]`: those commands need aal2 (a restrictive policy for authenticated);
- `full_access = {role = [...]}`: that role runs those commands on every row.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from payguard.errors import PayguardError

MANAGED_ROLES = (
    "anon",
    "authenticated",
    "service_role",
    "payment_service",
    "escrow_service",
    "admin",
    "auditor",
)
COMMANDS = ("select", "insert", "update", "delete")
PRIVILEGE_ORDER = ("select", "insert", "update", "delete", "truncate", "references", "trigger")
MAX_NAME_LENGTH = 63  # PostgreSQL truncates longer identifiers
AAL2 = "((select auth.jwt()) ->> 'aal') = 'aal2'"

_OWN_VERBS = {"select": "read", "insert": "add", "update": "update", "delete": "delete"}
_MFA_VERBS = {"select": "Reading", "insert": "Adding", "update": "Changing", "delete": "Deleting"}
_ALL_VERBS = {"select": "read", "insert": "add", "update": "update", "delete": "delete"}
_PRIVILEGE = re.compile(r"^(?P<name>[a-z]+)(?: \((?P<columns>[^)]*)\))?$")
_AUTH_CALL = re.compile(
    r"\(\s*select\s+auth\.(?P<wrapped>uid|jwt)\(\)\s*\)|auth\.(?P<bare>uid|jwt)\(\)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Privilege:
    name: str
    columns: tuple[str, ...] = ()

    def sql(self) -> str:
        if not self.columns:
            return self.name
        return f"{self.name} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class Policy:
    name: str
    command: str
    roles: tuple[str, ...]
    permissive: bool
    using: str | None
    check: str | None


@dataclass(frozen=True)
class TableSpec:
    table: str
    schema: str
    noun: str
    description: str
    path: Path
    grants: dict[str, tuple[Privilege, ...]]
    policies: tuple[Policy, ...]
    owner_column: str | None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


def load_specs(folder: Path) -> list[TableSpec]:
    """Every spec in `folder`, sorted by table; raises on the first invalid one."""
    if not folder.is_dir():
        raise PayguardError(f"no policy specs folder at {folder}")
    specs = [load_spec(path) for path in sorted(folder.glob("*.toml"))]
    if not specs:
        raise PayguardError(f"no policy specs (*.toml) in {folder}")
    tables = [s.qualified for s in specs]
    duplicates = sorted({t for t in tables if tables.count(t) > 1})
    if duplicates:
        raise PayguardError(f"more than one spec for {', '.join(duplicates)}")
    return sorted(specs, key=lambda s: s.qualified)


def load_spec(path: Path) -> TableSpec:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise PayguardError(f"{path.name}: not valid TOML: {exc}") from None
    errors = sorted(_validator().iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
        raise PayguardError(f"{path.name}: {where}: {errors[0].message}")
    if path.stem != raw["table"]:
        raise PayguardError(f"{path.name}: the file must be named after its table, {raw['table']}")
    noun = str(raw["noun"])
    policies = [
        *_owner_policies(raw.get("owner"), noun),
        *_full_access_policies(raw.get("full_access", {}), noun),
        *[_explicit_policy(p) for p in raw.get("policies", [])],
        *_mfa_policies(raw.get("mfa", []), noun),
    ]
    _check_policies(path, policies)
    return TableSpec(
        table=raw["table"],
        schema=raw.get("schema", "public"),
        noun=noun,
        description=raw["description"],
        path=path,
        grants={
            role: tuple(_privileges(path, role, raw["grants"][role]))
            for role in MANAGED_ROLES
            if role in raw["grants"]
        },
        policies=tuple(policies),
        owner_column=(raw.get("owner") or {}).get("column"),
    )


def wrap_auth_calls(expression: str) -> str:
    """Write every auth.uid() and auth.jwt() as (select auth.…()), so that Postgres runs it
    once per statement (an initPlan) rather than once per row."""

    def wrapped(match: re.Match[str]) -> str:
        name = match["wrapped"] or match["bare"]
        return f"(select auth.{name.lower()}())"

    return _AUTH_CALL.sub(wrapped, expression)


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(resources.files(__package__).joinpath("spec.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _privileges(path: Path, role: str, entries: list[str]) -> list[Privilege]:
    found: list[Privilege] = []
    for entry in entries:
        match = _PRIVILEGE.match(entry)
        assert match is not None  # the schema's pattern guarantees it
        columns = tuple(c.strip() for c in (match["columns"] or "").split(",") if c.strip())
        if any(p.name == match["name"] for p in found):
            raise PayguardError(f"{path.name}: grants/{role}: {match['name']} is given twice")
        found.append(Privilege(match["name"], columns))
    return sorted(found, key=lambda p: PRIVILEGE_ORDER.index(p.name))


def _owner_policies(owner: dict[str, Any] | None, noun: str) -> list[Policy]:
    if not owner:
        return []
    own_row = f"{owner['column']} = (select auth.uid())"
    return [
        Policy(
            name=f"Users can {_OWN_VERBS[command]} their own {noun}",
            command=command,
            roles=("authenticated",),
            permissive=True,
            using=own_row if command != "insert" else None,
            check=own_row if command in ("insert", "update") else None,
        )
        for command in _ordered(owner["commands"])
    ]


def _mfa_policies(commands: list[str], noun: str) -> list[Policy]:
    return [
        Policy(
            name=f"{_MFA_VERBS[command]} {noun} requires MFA (aal2)",
            command=command,
            roles=("authenticated",),
            permissive=False,
            using=AAL2 if command != "insert" else None,
            check=AAL2 if command in ("insert", "update") else None,
        )
        for command in _ordered(commands)
    ]


def _full_access_policies(full_access: dict[str, list[str]], noun: str) -> list[Policy]:
    return [
        Policy(
            name=f"{role} can {_ALL_VERBS[command]} all {noun}",
            command=command,
            roles=(role,),
            permissive=True,
            using="true" if command != "insert" else None,
            check="true" if command in ("insert", "update") else None,
        )
        for role in MANAGED_ROLES
        if role in full_access
        for command in _ordered(full_access[role])
    ]


def _explicit_policy(raw: dict[str, Any]) -> Policy:
    return Policy(
        name=raw["name"],
        command=raw["command"],
        roles=tuple(r for r in MANAGED_ROLES if r in raw["to"]),
        permissive=raw.get("kind", "permissive") == "permissive",
        using=wrap_auth_calls(raw["using"]) if "using" in raw else None,
        check=wrap_auth_calls(raw["check"]) if "check" in raw else None,
    )


def _check_policies(path: Path, policies: list[Policy]) -> None:
    names: set[str] = set()
    for policy in policies:
        where = f"{path.name}: policy {policy.name!r}"
        if len(policy.name) > MAX_NAME_LENGTH:
            raise PayguardError(f"{where}: longer than {MAX_NAME_LENGTH} characters")
        if policy.name in names:
            raise PayguardError(f"{where}: the name is used twice")
        names.add(policy.name)
        if policy.command == "insert" and (policy.using or not policy.check):
            raise PayguardError(f"{where}: an insert policy has a check and no using")
        if policy.command in ("select", "delete") and (policy.check or not policy.using):
            raise PayguardError(f"{where}: a {policy.command} policy has a using and no check")
        if policy.command == "update" and not policy.using:
            raise PayguardError(f"{where}: an update policy needs a using")


def _ordered(commands: list[str]) -> list[str]:
    return [c for c in COMMANDS if c in commands]
