"""The embedded PostgreSQL 15 cluster: initdb on first use, start, stop, status, destroy.

The cluster is built the way a Supabase project is: the bootstrap superuser is `supabase_admin`,
and `postgres` is an ordinary login role with CREATEROLE, CREATEDB, REPLICATION and BYPASSRLS.
Migrations run as `postgres`, so a statement that needs a superuser fails here as it would on
Supabase.

It listens on 127.0.0.1 (password auth) and on a unix socket in its own folder (trust, but the
folder is private to the server's OS user). Its data are disposable: durability settings are
off to keep test databases fast to clone, and the project's cluster keeps its data directory in
memory (a tmpfs, /dev/shm) when the machine has one, where a file costs a fraction of what it
costs on disk: a database clone is about a thousand files. `PAYGUARD_CLUSTER_DATA=disk` keeps it
on disk. A cluster whose memory was emptied (a restart of the machine) is made anew by the next
start, as a cluster that was never made.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from payguard.cluster_memory import (
    make_data,
    memory_root,
    remove_data,
    trusted_data,
)
from payguard.errors import PayguardError
from payguard.project import Project
from payguard.server_user import (
    give_to_server_user,
    server_command,
    server_user_can_reach,
    server_user_home,
    write_server_file,
)

PG_MAJOR = 15
ADMIN_ROLE = "supabase_admin"
APP_ROLE = "postgres"
APP_PASSWORD = "postgres"  # noqa: S105 - the local stack's well-known password, as Supabase's
DATABASE = "postgres"
# The Supabase CLI's own local stack takes these on 127.0.0.1.
RESERVED_PORTS = frozenset({54320, 54322})
# A unix socket path (folder + "/.s.PGSQL.NNNNN") must fit in sockaddr_un's 108 bytes.
MAX_SOCKET_DIR_LEN = 90
SETTINGS_FILE = "payguard.conf"
# Server libraries loaded at start when installed (Debian's postgresql-15-cron and -pgaudit).
PRELOADED_LIBRARIES = ("pg_cron", "pgaudit")


def pg_bindir() -> Path:
    """The folder of the PostgreSQL 15 server programs."""
    override = os.environ.get("PAYGUARD_PG_BINDIR")
    bindir = Path(override) if override else Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    if all((bindir / program).is_file() for program in ("initdb", "pg_ctl", "postgres")):
        return bindir
    raise PayguardError(
        f"PostgreSQL {PG_MAJOR} server binaries not found in {bindir}; "
        f"run `make setup` or `apt-get install postgresql-{PG_MAJOR}`"
    )


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    pid: int | None
    port: int | None
    data_dir: Path
    socket_dir: Path
    # the folder in memory that data_dir links to, if the data live in memory
    data_in_memory: Path | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "port": self.port,
            "data_dir": str(self.data_dir),
            "data_in_memory": None if self.data_in_memory is None else str(self.data_in_memory),
            "socket_dir": str(self.socket_dir),
        }


class Cluster:
    """One embedded cluster, living in `base` (data/, run/ and log/ inside it)."""

    def __init__(
        self, base: Path, *, superuser: str = ADMIN_ROLE, memory: Path | None = None
    ) -> None:
        self.base = base
        # The bootstrap superuser. Only a cluster built like Supabase's (`supabase_admin`)
        # gets the separate, non-superuser `postgres` role; `superuser="postgres"` builds a
        # plain cluster like Debian's, whose bootstrap superuser is `postgres` itself.
        self.superuser = superuser
        # Where initdb puts the data when the cluster is made (data/ is then a symlink to a
        # folder there); None: in data/ itself. A made cluster stays where it was made.
        self.memory = memory

    @classmethod
    def for_project(cls, project: Project) -> Cluster:
        """The project's cluster, under `.payguard/cluster`.

        When the server's OS user cannot reach the project folder (a root-owned private folder),
        or the socket path would be too long, the cluster lives in that user's home instead and
        `.payguard/cluster` is a symlink to it.
        """
        link = project.state_dir / "cluster"
        if link.is_symlink() or link.exists():
            return cls._where_made(cls(link.resolve()))
        project.state_dir.mkdir(parents=True, exist_ok=True)
        project.state_dir.chmod(0o755)
        socket_dir = link / "run"
        if server_user_can_reach(project.state_dir) and len(str(socket_dir)) <= MAX_SOCKET_DIR_LEN:
            return cls._where_made(cls(link))
        digest = hashlib.sha256(str(project.root).encode()).hexdigest()[:12]
        base = server_user_home() / "payguard" / digest
        if base.exists():
            # Left by an earlier checkout at the same path, whose .payguard/ is gone: its
            # state went with it.
            cls(base).destroy()
        base.mkdir(parents=True)
        give_to_server_user(base.parent)
        give_to_server_user(base)
        link.symlink_to(base, target_is_directory=True)
        return cls._where_made(cls(base))

    @staticmethod
    def _where_made(cluster: Cluster) -> Cluster:
        """The cluster, to be made in memory if it is not made yet and the machine allows it
        (PAYGUARD_CLUSTER_DATA is read only then: a made cluster stays where it is)."""
        if not cluster.initialized():
            cluster.memory = memory_root()
        return cluster

    @classmethod
    def destroy_for_project(cls, project: Project) -> bool:
        """Stop and delete the project's cluster, wherever it lives. False if there was none."""
        link = project.state_dir / "cluster"
        if not (link.is_symlink() or link.exists()):
            return False
        cls(link.resolve()).destroy()
        if link.is_symlink():
            link.unlink()
        return True

    # -- layout -----------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def data_in_memory(self) -> Path | None:
        """The folder in memory that holds the data, when data/ is a link to one this cluster
        made (a link to anything else is not followed: see payguard.cluster_memory)."""
        return trusted_data(self.data_dir, self._memory_prefix())

    def _memory_prefix(self) -> str:
        """The start of the name of this cluster's folder in memory (the rest is random)."""
        digest = hashlib.sha256(str(self.base.resolve()).encode()).hexdigest()[:16]
        return f"payguard-{digest}-"

    def _data_readable(self) -> bool:
        """data/ is a folder, or a link to this cluster's folder in memory."""
        return not self.data_dir.is_symlink() or self.data_in_memory() is not None

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def log_file(self) -> Path:
        return self.base / "log" / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def initialized(self) -> bool:
        """True once initdb and payguard's own set-up have both finished."""
        return (
            self._data_readable()
            and (self.data_dir / "PG_VERSION").is_file()
            and (self.data_dir / SETTINGS_FILE).is_file()
        )

    # -- connection strings -----------------------------------------------------------------

    def port(self) -> int | None:
        settings = self.data_dir / SETTINGS_FILE
        if not self._data_readable() or not settings.is_file():
            return None
        for line in settings.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "port":
                return int(value.strip())
        return None

    def url(self, database: str = DATABASE) -> str:
        """The TCP URL of the `postgres` role, as the Supabase CLI and apps take it."""
        return (
            f"postgresql://{APP_ROLE}:{APP_PASSWORD}@127.0.0.1:{self._require_port()}/{database}"
            "?sslmode=disable"
        )

    def admin_url(self, database: str = DATABASE) -> str:
        """The superuser's URL, over the cluster's private unix socket."""
        return (
            f"postgresql://{self.superuser}@/{database}"
            f"?host={self.socket_dir}&port={self._require_port()}"
        )

    def socket_url(self, role: str = APP_ROLE, database: str = DATABASE) -> str:
        """A URL for `role` over the unix socket (no password), for psql and pg_prove."""
        return f"postgresql://{role}@/{database}?host={self.socket_dir}&port={self._require_port()}"

    def _require_port(self) -> int:
        port = self.port()
        if port is None:
            raise PayguardError(
                f"the embedded cluster in {self.base} is not initialised; run `payguard db start`"
            )
        return port

    # -- lifecycle --------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        pid = self._live_postmaster_pid()
        return ClusterStatus(
            running=pid is not None,
            pid=pid,
            port=self.port(),
            data_dir=self.data_dir,
            socket_dir=self.socket_dir,
            data_in_memory=self.data_in_memory(),
        )

    def start(self, port: int | None = None) -> ClusterStatus:
        """Start the cluster, creating it first if needed. Starting a running cluster is a no-op."""
        bindir = pg_bindir()
        if port is not None and port in RESERVED_PORTS:
            raise PayguardError(
                f"port {port} is reserved for the Supabase CLI's local stack; choose another"
            )
        if self._data_readable() and (self.data_dir / "PG_VERSION").is_file():
            self._check_major_version()
        if self.initialized():
            current = self.status()
            if current.running:
                if port is not None and port != current.port:
                    raise PayguardError(
                        f"the embedded cluster is already running on port {current.port}; "
                        f"run `payguard db stop` before moving it to port {port}"
                    )
                if current.port is not None and self._stale_settings(bindir, current.port):
                    # Made by an older payguard: its settings take effect on a restart.
                    self.stop()
                    return self.start()
                return current
            self._check_stale_pid_file()
        wanted = port if port is not None else (self.port() or free_port())
        self._check_port_free(wanted)
        if not self.initialized():
            self._initdb(bindir, wanted)
        elif self._stale_settings(bindir, wanted):
            self._write_settings(wanted, bindir)
        self._prepare_runtime_dirs()
        result = subprocess.run(
            server_command(
                [
                    str(bindir / "pg_ctl"),
                    "start",
                    "--wait",
                    "--timeout=60",
                    "--silent",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PayguardError(
                f"PostgreSQL did not start: {self._last_log_line() or result.stderr.strip()}; "
                f"see {self.log_file}"
            )
        return self.status()

    def stop(self) -> bool:
        """Stop the cluster. Returns False when it was not running (which is not an error)."""
        if not self.initialized() or self._live_postmaster_pid() is None:
            return False
        result = subprocess.run(
            server_command(
                [
                    str(pg_bindir() / "pg_ctl"),
                    "stop",
                    "--wait",
                    "--timeout=60",
                    "--silent",
                    "-m",
                    "fast",
                    "-D",
                    str(self.data_dir),
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PayguardError(f"PostgreSQL did not stop: {result.stderr.strip()}")
        return True

    def destroy(self) -> None:
        """Stop the cluster and delete its folder, and its data wherever they are."""
        if self._data_readable() and (self.data_dir / "PG_VERSION").is_file():
            self.stop()
        self._remove_data()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- internals --------------------------------------------------------------------------

    def _check_major_version(self) -> None:
        found = (self.data_dir / "PG_VERSION").read_text().strip()
        if found != str(PG_MAJOR):
            raise PayguardError(
                f"the cluster in {self.data_dir} is PostgreSQL {found}, not {PG_MAJOR}; "
                "run `payguard db reset` to recreate it (this deletes its data)"
            )

    def _remove_data(self) -> None:
        """Delete data/: the folder, or the link and the folder in memory this cluster made."""
        if self.data_dir.is_symlink():
            remove_data(self.data_dir, self._memory_prefix())
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _make_data_dir(self) -> None:
        """An empty data/, or a link to an empty folder in memory, owned by the server's user."""
        if self.memory is None:
            self.data_dir.mkdir(mode=0o700)
            give_to_server_user(self.data_dir)
        else:
            make_data(self.memory, self._memory_prefix(), self.data_dir)

    def _initdb(self, bindir: Path, port: int) -> None:
        """initdb, then payguard's settings and roles; a failure leaves no half-made cluster."""
        self._remove_data()  # a half-made one, from a failure, or one whose memory was emptied
        self.base.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.base)
        try:
            self._make_data_dir()
            result = subprocess.run(
                server_command(
                    [
                        str(bindir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        self.superuser,
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--no-instructions",
                        # Disposable data (fsync is off too): no waiting for the disk.
                        "--no-sync",
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise PayguardError(f"initdb failed: {result.stderr.strip().splitlines()[-1]}")
            self._write_access_rules()
            write_server_file(
                self.data_dir / "postgresql.conf",
                f"\ninclude_if_exists = '{SETTINGS_FILE}'\n",
                append=True,
            )
            if self.superuser != APP_ROLE:
                self._bootstrap_roles(bindir)
            self._write_settings(port, bindir)  # last: marks the cluster as initialised
        except BaseException:
            self._remove_data()
            raise

    def _write_access_rules(self) -> None:
        """Who may connect how. The socket folder is private to the server's OS user (and
        root), so it trusts; TCP takes passwords, and the superuser has none and is refused."""
        write_server_file(
            self.data_dir / "pg_hba.conf",
            "# Written by payguard.\n"
            "# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
            "local   all       all            trust\n"
            f"host    all       {self.superuser}  127.0.0.1/32  reject\n"
            f"host    all       {self.superuser}  ::1/128       reject\n"
            "host    all       all   127.0.0.1/32  scram-sha-256\n"
            "host    all       all   ::1/128       scram-sha-256\n",
        )

    def _settings_text(self, port: int, bindir: Path) -> str:
        libraries = ", ".join(
            library
            for library in PRELOADED_LIBRARIES
            if (bindir.parent / "lib" / f"{library}.so").is_file()
        )
        return (
            "# Written by payguard: the embedded cluster's own settings.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n"
            "# Disposable data: trade durability for fast test databases.\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 200\n"
            "# Loaded at start, as on Supabase: pg_cron runs the audit sealer's schedule in the\n"
            "# `postgres` database, connecting over the private socket (trusted) as the job's\n"
            "# role; pgaudit logs reads of restricted data.\n"
            f"shared_preload_libraries = '{libraries}'\n"
            f"cron.database_name = '{DATABASE}'\n"
            f"cron.host = '{self.socket_dir}'\n"
            "# Each log line names its process, role, database and transaction (virtual id), so\n"
            "# that the lines one transaction wrote are found together.\n"
            "log_line_prefix = '%m [%p] %q%u@%d %v '\n"
        )

    def _stale_settings(self, bindir: Path, port: int) -> bool:
        """True when the settings file is not what this payguard writes for `port`."""
        settings = self.data_dir / SETTINGS_FILE
        return settings.read_text() != self._settings_text(port, bindir)

    def _write_settings(self, port: int, bindir: Path) -> None:
        write_server_file(self.data_dir / SETTINGS_FILE, self._settings_text(port, bindir))

    def _prepare_runtime_dirs(self) -> None:
        for folder in (self.socket_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
            give_to_server_user(folder)
        self.socket_dir.chmod(0o700)

    def _bootstrap_roles(self, bindir: Path) -> None:
        """Make `postgres` the non-superuser owner role that Supabase has, in single-user mode."""
        script = (
            f"create role {APP_ROLE} login password '{APP_PASSWORD}' nosuperuser createrole "
            "createdb replication bypassrls;\n"
            f"alter database {DATABASE} owner to {APP_ROLE};\n"
        )
        result = subprocess.run(
            server_command(
                [
                    str(bindir / "postgres"),
                    "--single",
                    "-j",
                    "-D",
                    str(self.data_dir),
                    DATABASE,
                ]
            ),
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or "ERROR" in result.stdout + result.stderr:
            reason = (result.stderr or result.stdout).strip()
            raise PayguardError(f"could not create the `{APP_ROLE}` role: {reason}")

    def _live_postmaster_pid(self) -> int | None:
        pid = self._pid_file_pid()
        if pid is None or not _process_is_postgres_of(pid, self.data_dir):
            return None
        return pid

    def _pid_file_pid(self) -> int | None:
        try:
            first = self.pid_file.read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            return None
        try:
            return int(first.strip())
        except ValueError:
            return None

    def _check_stale_pid_file(self) -> None:
        pid = self._pid_file_pid()
        if pid is None or not _process_exists(pid):
            return  # absent, or left by a crash: the server replaces it itself
        raise PayguardError(
            f"stale pid file {self.pid_file}: it names process {pid}, which is not this "
            "cluster's server; make sure no PostgreSQL uses this folder, delete the file, "
            "then run `payguard db start` again"
        )

    def _check_port_free(self, port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the server binds: a port whose last connections linger in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PayguardError(
                    f"port {port} on 127.0.0.1 is already in use by another process; free it, "
                    "or move the cluster with `payguard db start --port <free port>`"
                ) from None

    def _last_log_line(self) -> str:
        with contextlib.suppress(OSError):
            lines = [ln for ln in self.log_file.read_text().splitlines() if ln.strip()]
            if lines:
                return lines[-1]
        return ""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, other than the reserved ones."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_is_postgres_of(pid: int, data_dir: Path) -> bool:
    """True when `pid` is a running postgres server for `data_dir`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not cmdline or not cmdline[0].endswith(b"postgres"):
        return False
    try:
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return _process_exists(pid)
    return cwd == data_dir.resolve()
