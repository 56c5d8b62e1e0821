"""Running PostgreSQL's server programs as a user it accepts.

PostgreSQL refuses to run as root. When payguard runs as root (as CI does), the server programs
run as the `postgres` OS user, which must own the data directory and be able to reach it.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from payguard.errors import PayguardError

SERVER_OS_USER = "postgres"


def running_as_root() -> bool:
    return os.geteuid() == 0


def server_command(argv: Sequence[str]) -> list[str]:
    """The argv that runs a server program as the right OS user."""
    if not running_as_root():
        return list(argv)
    if shutil.which("runuser") is None:
        raise PayguardError("runuser not found; install util-linux to run PostgreSQL as root")
    return ["runuser", "-u", SERVER_OS_USER, "--", *argv]


def server_uid_gid() -> tuple[int, int] | None:
    """The uid and gid that own the cluster's files, or None when it is the current user."""
    if not running_as_root():
        return None
    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise PayguardError(
            f"running as root, but there is no `{SERVER_OS_USER}` OS user to run the server; "
            "install postgresql-15 (it creates that user) or run payguard as a normal user"
        ) from None
    return entry.pw_uid, entry.pw_gid


def give_to_server_user(path: Path) -> None:
    """Make `path` owned by the server's OS user (a no-op unless running as root)."""
    ids = server_uid_gid()
    if ids is not None:
        os.chown(path, *ids)


def write_server_file(path: Path, text: str, *, append: bool = False) -> None:
    """Write (or append to) a file of the server's OS user, such as one in the data folder,
    owned by that user afterwards. The server's user can replace any file there with a
    symbolic link: it is never followed (as root, writing or chowning through one would hand
    that user whatever it points at)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PayguardError(
                f"{path} is a symbolic link; payguard does not write through one: delete it, "
                "then try again"
            ) from None
        raise
    with os.fdopen(fd, "a" if append else "w") as file:
        ids = server_uid_gid()
        if ids is not None:
            os.fchown(file.fileno(), *ids)
        file.write(text)


def server_user_can_reach(path: Path) -> bool:
    """True when the server's OS user can enter `path` (every folder above it is traversable)."""
    if not running_as_root():
        return True
    result = subprocess.run(
        server_command(["test", "-x", str(path)]), capture_output=True, check=False
    )
    return result.returncode == 0


def server_user_home() -> Path:
    ids = server_uid_gid()
    if ids is None:
        return Path.home()
    return Path(pwd.getpwnam(SERVER_OS_USER).pw_dir)
