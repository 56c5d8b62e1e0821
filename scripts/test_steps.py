"""`make test`'s runner: its steps in stages, the steps of a stage side by side.

Each step is a make target (`make SETUP= STEP`). A stage is one or more steps joined by `+`;
the stages run in order, and the steps of one stage at once, as they share nothing: the
linters read files while the database checks wait on the server. A stage of one step prints
its output as it comes; a stage of several prints each step's output whole when the step
ends, so outputs never interleave. Every step gets a header and its time. The first step
that fails stops the run: the steps still running are ended, and the exit code is 1.

    python scripts/test_steps.py lint+sqlfluff+supabase-checks schema-check pgtap pytest
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

MAKE = os.environ.get("MAKE", "make")


@dataclass
class Step:
    name: str
    process: subprocess.Popen[bytes]
    started: float
    output: bytearray = field(default_factory=bytearray)
    took: str = ""


def start(name: str, *, capture: bool) -> Step:
    process = subprocess.Popen(
        [MAKE, "--no-print-directory", "SETUP=", name],
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        start_new_session=True,  # its own process group, ended whole if another step fails
    )
    return Step(name, process, time.perf_counter())


def seconds(since: float) -> str:
    return f"{time.perf_counter() - since:.1f} s"


def say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def end(steps: list[Step]) -> None:
    for step in steps:
        if step.process.poll() is None:
            os.killpg(step.process.pid, signal.SIGTERM)
    for step in steps:
        try:
            step.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(step.process.pid, signal.SIGKILL)
            step.process.wait()


def run_stage(names: list[str]) -> bool:
    """Run one stage; True when every step passed."""
    if len(names) == 1:
        say(f"\n==> {names[0]}\n")
        step = start(names[0], capture=False)
        code = step.process.wait()
        verdict = "" if code == 0 else " FAILED after"
        say(f"==> {step.name}{verdict}: {seconds(step.started)}\n")
        return code == 0
    say(f"\n==> {' + '.join(names)}: side by side, each printed whole when it ends\n")
    running = [start(name, capture=True) for name in names]
    ended: queue.Queue[Step] = queue.Queue()
    for step in running:
        threading.Thread(target=collect, args=(step, ended), daemon=True).start()
    try:
        for _ in running:
            step = ended.get()
            code = step.process.wait()
            say(f"\n==> {step.name}\n")
            sys.stdout.buffer.write(step.output)
            if code != 0:
                say(f"==> {step.name} FAILED after: {step.took}\n")
                return False
            say(f"==> {step.name}: {step.took}\n")
    finally:
        end(running)
    return True


def collect(step: Step, ended: queue.Queue[Step]) -> None:
    """Read a step's output to its end (the step's end), then report the step as ended."""
    assert step.process.stdout is not None
    descriptor = step.process.stdout.fileno()
    while chunk := os.read(descriptor, 65536):
        step.output += chunk
    step.process.wait()
    step.took = seconds(step.started)
    ended.put(step)


def main(stages: list[str]) -> int:
    started = time.perf_counter()
    for stage in stages:
        if not run_stage([name for name in stage.split("+") if name]):
            return 1
    say(f"\n==> make test: every step passed in {seconds(started)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
