"""`make test`'s runner: its steps in stages, the steps of a stage side by side.

Each step is a make target (`make SETUP= STEP`). A stage is one or more steps joined by `+`;
the stages run in order, and the steps of one stage at once, as they share nothing: the
linters read files while the database checks wait on the server. A stage of one step prints
its output as it comes; a stage of several prints each step's output whole when the step
ends (scripts/side_by_side.py), so outputs never interleave. Every step gets a header and
its time. The first step that fails stops the run, ending the steps still running.

    python scripts/test_steps.py lint+sqlfluff+supabase-checks schema-check pgtap pytest
"""

from __future__ import annotations

import os
import sys
import time

from side_by_side import end, run_at_once, say, seconds, start, stop_on_signals

MAKE = os.environ.get("MAKE", "make")


def step_command(name: str) -> list[str]:
    return [MAKE, "--no-print-directory", "SETUP=", name]


def run_stage(names: list[str]) -> bool:
    """Run one stage; True when every step passed."""
    if len(names) > 1:
        say(f"\n==> {' + '.join(names)}: side by side, each printed whole when it ends\n")
        return run_at_once([(name, step_command(name)) for name in names])
    say(f"\n==> {names[0]}\n")
    step = start(names[0], step_command(names[0]), capture=False)
    try:
        code = step.process.wait()
    finally:
        end([step])  # a no-op unless this run was interrupted
    verdict = "" if code == 0 else " FAILED after"
    say(f"==> {step.name}{verdict}: {seconds(step.started)}\n")
    return code == 0


def main(stages: list[str]) -> int:
    started = time.perf_counter()
    for stage in stages:
        if not run_stage([name for name in stage.split("+") if name]):
            return 1
    say(f"\n==> make test: every step passed in {seconds(started)}\n")
    return 0


if __name__ == "__main__":
    stop_on_signals()
    sys.exit(main(sys.argv[1:]))
