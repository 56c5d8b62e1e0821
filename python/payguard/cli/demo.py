"""`payguard demo`: the seeded users at work, and attacks being refused."""

from __future__ import annotations

import typer

from payguard.cli.common import out, state
from payguard.demo import Outcome, run_demo


def print_outcome(outcome: Outcome) -> None:
    mark = "[green]allowed[/]" if outcome.allowed else "[red]refused[/]"
    surprise = "" if outcome.as_expected else "  [bold red]<- NOT AS EXPECTED[/]"
    out.print(f"{mark}  [bold]{outcome.step.actor}[/] {outcome.step.action}{surprise}")
    out.print(f"         {outcome.detail}", markup=False)


def demo(ctx: typer.Context) -> None:
    """Deploy and seed a demo database, then act as each seeded user, attacks included."""
    outcomes = run_demo(state(ctx).project(), print_outcome)
    wrong = [o for o in outcomes if not o.as_expected]
    out.print(f"{len(outcomes)} steps, {len(wrong)} not as expected")
    if wrong:
        raise typer.Exit(code=1)
