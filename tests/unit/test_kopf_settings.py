"""kopf wiring: the diff base kopf would build per watch event is skipped only while no handler needs it."""

from __future__ import annotations

import kopf

from agentops_operator import handlers


def test_the_operator_registers_no_change_handlers() -> None:
    # NoDiffBase is installed at start-up only under this condition; a change handler added later
    # (on.create / on.update / on.resume, daemons, timers) gets kopf's own diff base back.
    assert not handlers.uses_change_handlers(kopf.get_default_registry())


def test_a_registry_with_a_change_handler_keeps_kopfs_diff_base() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.update("agentops.dev", "v1alpha1", "agents", registry=registry)
    def changed(**_: object) -> None:
        pass

    assert handlers.uses_change_handlers(registry)


def test_no_diff_base_copies_nothing() -> None:
    body = kopf.Body({"metadata": {"name": "x", "labels": {"a": "b"}}, "spec": {"big": list(range(1000))}})
    storage = handlers.NoDiffBase()
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
