"""Local background services (localstripe, Deno function servers): start one detached, with
its log under the project's state folder, wait until it listens, find it again from its pid
file, stop it. A service's state is one JSON file; its process is its own session, so stopping
it stops its children too."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payguard.errors import PayguardError

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# Seconds between checks whether a starting service listens yet.
LISTEN_POLL = 0.05


@dataclass(frozen=True)
class Service:
    """One background process: `name` names it in messages; its files live in `state_dir`."""

    name: str
    state_dir: Path

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def state(self) -> dict[str, Any] | None:
        """The recorded state of the running process, or None when it does not run (a state
        left by a process that died is removed)."""
        try:
            recorded = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        pid = recorded.get("pid")
        if isinstance(pid, int) and _alive(pid, recorded.get("argv0")):
            return dict(recorded)
        self.state_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        details: Mapping[str, Any] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> dict[str, Any]:
        """Start `argv` detached, wait until 127.0.0.1:`port` accepts connections, record and
        return its state (pid, port and `details`)."""
        return self.launch(
            argv, port=port, env=env, cwd=cwd, details=details, timeout=timeout
        ).wait()

    def launch(
        self,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        details: Mapping[str, Any] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> Launch:
        """Start `argv` detached and return at once; its Launch waits until it listens (so
        that several services start side by side)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        recorded = {**(details or {}), "pid": process.pid, "port": port, "argv0": argv[0]}
        return Launch(self, process, recorded, time.monotonic() + timeout, timeout)

    def terminate(self) -> bool:
        """Ask the process (and its session) to end, without waiting (stop() then waits for
        it). False when it was not running."""
        current = self.state()
        if current is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(current["pid"]), signal.SIGTERM)
        return True

    def stop(self) -> bool:
        """Stop the process (and its session). False when it was not running."""
        current = self.state()
        if current is None:
            return False
        _stop_group(int(current["pid"]))
        self.state_file.unlink(missing_ok=True)
        return True

    def last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_file.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"


@dataclass
class Launch:
    """A service started and not yet known to listen."""

    service: Service
    process: subprocess.Popen[bytes]
    recorded: dict[str, Any]
    deadline: float
    timeout: float

    def wait(self) -> dict[str, Any]:
        """Wait until the service listens on its port, record and return its state; an error
        when it exits first or does not listen in time (then it is stopped)."""
        name, port, process = self.service.name, int(self.recorded["port"]), self.process
        while not _listening(port) or not _listens_in_session(process.pid, port):
            if process.poll() is not None:
                if _listening(port):
                    raise PortTakenError(
                        f"{name} could not listen on port {port}: another process took it "
                        f"first ({self.service.last_log_line()})"
                    )
                raise PayguardError(
                    f"{name} exited with code {process.returncode} before listening on "
                    f"port {port}: {self.service.last_log_line()}"
                )
            if time.monotonic() > self.deadline:
                _stop_group(process.pid)
                raise PayguardError(
                    f"{name} did not listen on port {port} within {self.timeout:.0f} s: "
                    f"{self.service.last_log_line()}"
                )
            time.sleep(LISTEN_POLL)
        if process.poll() is not None:
            raise PayguardError(
                f"{name} exited with code {process.returncode}, and something else "
                f"listens on port {port}: {self.service.last_log_line()}"
            )
        self.service.state_file.write_text(
            json.dumps(self.recorded, indent=2, sort_keys=True) + "\n"
        )
        return dict(self.recorded)

    def abort(self) -> None:
        """Stop the process, listening or not (nothing was recorded for it)."""
        _stop_group(self.process.pid)


class PortTakenError(PayguardError):
    """A free port that another process took between its choice and the service's start."""


def _listens_in_session(leader: int, port: int) -> bool:
    """True when a process of the session that `leader` leads (the service and its children)
    holds a socket listening on `port`: a port that something else listens on is not the
    service's, even though it accepts connections. Without /proc, a listening port is taken
    to be the service's."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return not Path("/proc/net/tcp").exists()
    for pid in _session_members(leader):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return True
    return False


def _session_members(leader: int) -> list[int]:
    """The processes whose session is `leader`'s (itself first)."""
    members = [leader]
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == leader:
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == leader:  # the session id
                    members.append(int(entry))
    return members


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int, argv0: object) -> bool:
    """True when `pid` runs and is the program that was started (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return not isinstance(argv0, str) or (bool(cmdline) and cmdline[0] == argv0.encode())


def _stop_group(pid: int) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL whatever outlives the timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _alive(pid, None):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
