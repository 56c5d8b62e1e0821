"""The errors the CLI turns into one line on stderr, and the exit codes it returns.

Every failure a user can act on is a PayguardError whose message says what went wrong and
what to do next; its class carries the exit code. The CLI's boundary (payguard.cli.common)
prints it and exits with that code; anything else is an internal error (exit 70).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `payguard` returns. Documented in the README's CLI section."""

    OK = 0
    # A finding (drift, a bad audit chain, a reconcile difference, policies that differ from
    # their specs, a stale access matrix), or a failure outside the database (the local
    # Stripe, Stripe's API, the project folder).
    FINDING = 1
    # Bad usage: an unknown option, a missing argument, or an option value payguard refuses.
    USAGE = 2
    # The database could not be reached or used: connection refused, bad credentials, not
    # deployed, an SQL error, a role that conflicts with payguard's.
    DATABASE = 3
    # A bug in payguard (an unexpected exception): sysexits' EX_SOFTWARE.
    INTERNAL = 70


class PayguardError(Exception):
    """A failure the user can act on. The message says what went wrong and what to do next."""

    exit_code: ExitCode = ExitCode.FINDING


class UsageError(PayguardError):
    """An option value payguard refuses (a bad URL, a database name that needs quoting...)."""

    exit_code = ExitCode.USAGE


class DatabaseError(PayguardError):
    """The database could not be reached or used."""

    exit_code = ExitCode.DATABASE


class ConnectionFailedError(DatabaseError):
    """libpq could not connect; the message keeps libpq's reason."""


class NotDeployedError(DatabaseError):
    """The database holds no payguard migrations."""
