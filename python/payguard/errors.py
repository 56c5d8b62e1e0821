"""The one exception type that the CLI turns into a one-line error and exit code 1."""


class PayguardError(Exception):
    """A failure the user can act on. The message says what went wrong and what to do next."""
