"""Commands run at once, each printed whole when it ends, the first failure ending the rest.

Each output is held until its command ends, then printed under a header with the command's
time, so outputs never interleave. When a command fails, the others still running are ended
(their whole process groups) and the exit code is 1.

    python scripts/side_by_side.py 'advisors: supabase db advisors ...' 'lint: supabase db lint ...'
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Command:
    name: str
    process: subprocess.Popen[bytes]
    started: float
    output: bytearray = field(default_factory=bytearray)
    took: str = ""


def start(name: str, argv: Sequence[str], *, capture: bool) -> Command:
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        start_new_session=True,  # its own process group, ended whole if another one fails
    )
    return Command(name, process, time.perf_counter())


def seconds(since: float) -> str:
    return f"{time.perf_counter() - since:.1f} s"


def say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def end(commands: list[Command]) -> None:
    """End the commands still running, each with its whole process group."""
    for command in commands:
        if command.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(command.process.pid, signal.SIGTERM)
    for command in commands:
        try:
            command.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command.process.pid, signal.SIGKILL)
            command.process.wait()


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP (a CI job canceled, a terminal closed) end this process as Ctrl-C
    does, through the `finally` blocks that end the commands: each runs in a session of its
    own, which the signal does not reach."""

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, leave)


def collect(command: Command, ended: queue.Queue[Command]) -> None:
    """Read a command's output to its end (the command's end), then report it as ended."""
    assert command.process.stdout is not None
    descriptor = command.process.stdout.fileno()
    while chunk := os.read(descriptor, 65536):
        command.output += chunk
    command.process.wait()
    command.took = seconds(command.started)
    ended.put(command)


def run_at_once(commands: Sequence[tuple[str, Sequence[str]]]) -> bool:
    """Run the named commands at once; True when every one passed."""
    running: list[Command] = []
    ended: queue.Queue[Command] = queue.Queue()
    try:
        for name, argv in commands:
            running.append(start(name, argv, capture=True))
            threading.Thread(target=collect, args=(running[-1], ended), daemon=True).start()
        for _ in running:
            command = ended.get()
            code = command.process.wait()
            say(f"\n==> {command.name}\n")
            sys.stdout.buffer.write(command.output)
            if code != 0:
                say(f"==> {command.name} FAILED after: {command.took}\n")
                return False
            say(f"==> {command.name}: {command.took}\n")
    finally:
        end(running)
    return True


def main(specs: list[str]) -> int:
    commands = []
    for spec in specs:
        name, separator, line = spec.partition(":")
        if not separator or not line.strip():
            raise SystemExit(f"side_by_side: expected 'name: command', got {spec!r}")
        commands.append((name.strip(), shlex.split(line)))
    return 0 if run_at_once(commands) else 1


if __name__ == "__main__":
    stop_on_signals()
    sys.exit(main(sys.argv[1:]))
