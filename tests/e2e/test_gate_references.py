"""A gate Job naming a ServiceAccount or a claim that does not exist fails the gate at once, naming
the field, instead of a Job whose pods never start and a gate "running" until its deadline."""

from __future__ import annotations

import time

import pytest

from .taskutil import EDITOR, blocked, cli, make_team, phase_is, task

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("field", "job"), [
    ("job.serviceAccountName", "{serviceAccountName: no-such-account}"),
    ("job.workspaceClaim", "{workspaceClaim: no-such-claim}"),
])
def test_gate_with_a_missing_reference_fails_naming_the_field(ns: str, operator, field: str, job: str) -> None:
    make_team(ns)
    task(ns, "t", f"""  gates:
  - transition: Assigned->InProgress
    gates:
    - {{name: check, type: Job, job: {job}}}""")
    phase_is(ns, "t", "Assigned")
    started = time.monotonic()
    cli(ns, "task", "move", "t", "InProgress", as_user=EDITOR)
    cond = blocked(ns, "t", "GateFailed", timeout=60)
    assert field in cond["message"] and "not found" in cond["message"], cond
    assert time.monotonic() - started < 60  # not the gate's 600 s deadline
