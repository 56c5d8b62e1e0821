"""Where an embedded cluster keeps its data in memory: a tmpfs (/dev/shm), in a folder private
to the server's OS user.

/dev/shm is shared by every user of the machine, and payguard may run as root. So nothing found
there is trusted because of its name:
- every cluster's folder lives in `payguard-<uid>/`, made 0700 and owned by the server's OS user
  (`uid`); anything else found under that name is refused;
- a cluster's `data/` is a symlink to `payguard-<uid>/<prefix><random>/data`. The link is read
  (never resolved), and its target is used, or deleted, only when each folder on the way is a
  real folder owned by that user, named as this cluster names them;
- each folder records, in `owner`, the link that points at it. A folder whose link is gone or
  points elsewhere (a cluster folder deleted by hand, a test run that was killed) is deleted
  when the next cluster is made, unless a server still runs in it; folders are swept and made
  under a lock (`.lock`), so that a folder being made is never taken for one left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from payguard.errors import PayguardError
from payguard.server_user import give_to_server_user, server_uid_gid

MEMORY_ROOT = Path("/dev/shm")  # noqa: S108 - a private folder is made there, then checked
STORAGE_VARIABLE = "PAYGUARD_CLUSTER_DATA"
STORAGE_CHOICES = ("memory", "disk")
# Below this much free memory in the tmpfs, a new cluster keeps its data on disk (a container's
# /dev/shm is often 64 MiB; a cluster and the tests' clones take several hundred).
MIN_FREE_BYTES = 2 * 1024**3
OWNER_FILE = "owner"
DATA = "data"
LOCK_FILE = ".lock"


def memory_root(root: Path = MEMORY_ROOT) -> Path | None:
    """The tmpfs a new cluster keeps its data in: `root` when it is one with room to spare,
    unless PAYGUARD_CLUSTER_DATA=disk; None when the data stay on disk."""
    choice = os.environ.get(STORAGE_VARIABLE, "memory").strip().lower() or "memory"
    if choice not in STORAGE_CHOICES:
        raise PayguardError(
            f"${STORAGE_VARIABLE} is {choice!r}; it takes {' or '.join(STORAGE_CHOICES)}"
        )
    if choice == "disk":
        return None
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
        room = os.statvfs(root)
    except OSError:
        return None
    tmpfs = any(
        len(fields) >= 3 and fields[1] == str(root) and fields[2] == "tmpfs"
        for fields in (line.split() for line in mounts)
    )
    if not tmpfs or room.f_bavail * room.f_frsize < MIN_FREE_BYTES:
        return None
    return root if os.access(root, os.W_OK | os.X_OK) else None


def _owner_uid() -> int:
    ids = server_uid_gid()
    return os.getuid() if ids is None else ids[0]


def _real_folder(path: Path, uid: int, *, private: bool = False) -> bool:
    """True when `path` is a real folder (not a link) owned by `uid`; closed to others too,
    when `private`."""
    try:
        found = os.lstat(path)
    except OSError:
        return False
    closed = not found.st_mode & 0o077 or not private
    return stat.S_ISDIR(found.st_mode) and found.st_uid == uid and closed


def _private_folder(path: Path, uid: int) -> bool:
    return _real_folder(path, uid, private=True)


def private_parent(root: Path) -> Path:
    """`root/payguard-<uid>`, made if missing; refused unless it is the server user's own."""
    uid = _owner_uid()
    parent = root / f"payguard-{uid}"
    if not os.path.lexists(parent):
        with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
            parent.mkdir(mode=0o700)
    # Made by root (this process, or another payguard run as root that has not handed it over
    # yet): only root can make a folder root owns, so it is handed to the server's user here.
    if server_uid_gid() is not None and _private_folder(parent, 0):
        give_to_server_user(parent)
    if not _private_folder(parent, uid):
        raise PayguardError(
            f"{parent} is not a folder private to the server's OS user (uid {uid}); remove it, "
            f"or set {STORAGE_VARIABLE}=disk"
        )
    return parent


def trusted_data(link: Path, prefix: str) -> Path | None:
    """The data folder `link` points at, when it is one this cluster made; else None (a link
    whose memory was emptied, or one that points anywhere else)."""
    if not link.is_symlink():
        return None
    target = Path(os.readlink(link))
    folder = target.parent
    uid = _owner_uid()
    if (
        not target.is_absolute()
        or target.name != DATA
        or not folder.name.startswith(prefix)
        or folder.parent.name != f"payguard-{uid}"
        or os.path.normpath(target) != str(target)
    ):
        return None
    if all(_private_folder(p, uid) for p in (folder.parent, folder)) and _real_folder(target, uid):
        return target
    return None


@contextlib.contextmanager
def _making(parent: Path) -> Iterator[None]:
    """Held while folders are swept or made: another process making a cluster at the same time
    (tests make several at once) would otherwise take a folder it has not linked yet for one
    left behind."""
    # Read-only, so that root and the server's user (who share the folder) both can take it.
    lock = os.open(parent / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        give_to_server_user(parent / LOCK_FILE)
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)  # which releases the lock


def make_data(root: Path, prefix: str, link: Path) -> None:
    """A new, empty data folder in memory for the cluster whose data/ is `link`, and the link.
    Folders left by clusters that are gone are deleted first."""
    parent = private_parent(root)
    with _making(parent):
        sweep(parent)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            (folder / OWNER_FILE).write_text(str(link) + "\n")
            (folder / DATA).mkdir(mode=0o700)
            for path in (folder, folder / OWNER_FILE, folder / DATA):
                give_to_server_user(path)
            link.symlink_to(folder / DATA, target_is_directory=True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise


def remove_data(link: Path, prefix: str) -> None:
    """Delete the folder `link` points at, if this cluster made it, and the link."""
    data = trusted_data(link, prefix)
    if data is not None:
        shutil.rmtree(data.parent, ignore_errors=True)
    if link.is_symlink():
        link.unlink()


def sweep(parent: Path) -> list[Path]:
    """Delete the folders under `parent` that no cluster links to any more and where no server
    runs; returns them. Called with the lock held (see _making)."""
    uid = _owner_uid()
    swept = []
    for folder in parent.iterdir():
        if not _private_folder(folder, uid):
            continue
        try:
            owner = Path((folder / OWNER_FILE).read_text().strip())
        except (OSError, UnicodeDecodeError):
            continue  # being made, or not one of ours
        data = folder / DATA
        linked = owner.is_symlink() and os.readlink(owner) == str(data)
        if linked or _server_runs_in(data):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        swept.append(folder)
    return swept


def _server_runs_in(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except PermissionError:
        return True  # a process of another user: it may well be the server
    except (OSError, ValueError, IndexError):
        return False
    return True
