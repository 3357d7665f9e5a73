"""One reconcile of an Agent's rollout: plan → apply → measure what is due → plan again → apply.

The kopf handler and the unit tests' simulator both run ``step``; they differ only in the three
callables (apply to the cluster or to a fake Deployment controller; measure with the providers or
with a test function; the clock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from .io import EventSpec, Plan, PlanInputs
from .planner import plan
from .state import AnalysisRunState


@dataclass(frozen=True)
class StepResult:
    plans: tuple[Plan, ...]  # one, or two when a measurement was taken in between

    @property
    def plan(self) -> Plan:
        """The plan the step ended with: its state is what status keeps."""
        return self.plans[-1]

    @property
    def events(self) -> tuple[EventSpec, ...]:
        return tuple(e for p in self.plans for e in p.events)


def step(
    inputs: PlanInputs,
    *,
    apply: Callable[[Plan], None],
    measure: Callable[[Plan], AnalysisRunState],
    clock: Callable[[], datetime],
) -> StepResult:
    """Plan and apply; if the plan asks for measurements and one was taken, plan again at once (so a
    failed analysis rolls back in the same reconcile) and apply that. ``measure`` gets a plan whose
    ``state.analysis`` is set and returns that run with the new measurements (or unchanged)."""
    first = plan(inputs)
    apply(first)
    if not first.measure or first.state.analysis is None:
        return StepResult((first,))
    run = measure(first)
    if run == first.state.analysis:
        return StepResult((first,))
    handled = {a.id for a in first.acks}
    again = replace(inputs, now=clock(), state=first.state.evolve(analysis=run),
                    commands=tuple(c for c in inputs.commands if c.nonce not in handled))
    second = plan(again)
    apply(second)
    return StepResult((first, second))
