"""Quota status is typed at runtime: the ledger reads `quotaledger.Ledger` and writes what it dumps, which
the CRD schema knows key by key (the API server would drop an unknown key silently)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from agentops_operator import crdgen
from agentops_operator import quotaledger as ql
from agentops_operator.conditions import set_condition
from agentops_operator.crdgen import unknown_keys as _unknown_keys
from agentops_operator.models import quota as qm

from .test_quotaledger import at, quota, run

SCHEMA = crdgen.render(qm.CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]


def _every_write() -> list[dict[str, Any]]:
    """The merge patches of every kind of ledger operation, a client rollover and its announcement included."""
    obj = quota(limit=5, window="1h")
    ops: list[tuple[ql.Op, float]] = [
        (ql.Settle(), 0), (ql.Consume(1, by="agent-x"), 1), (ql.Reserve("a", 1, "why"), 2), (ql.Commit("a"), 3),
        (ql.Reserve("b", 1), 4), (ql.Release("b"), 5), (ql.Consume(1, by="late"), 61),
    ]
    patches = [run(obj, op, at(t)).patch for op, t in ops]
    last = obj["status"]["lastReset"]
    patches.append(run(obj, ql.AnnounceReset(last["windowStart"]), at(62)).patch)
    patches.append(run(obj, ql.Forget(("a",)), at(200)).patch)
    return patches


def test_every_ledger_write_is_known_to_the_crd() -> None:
    patches = _every_write()
    assert all(patches), "each operation above writes something"
    keys = {k for p in patches for k in p}
    assert keys == set(ql.LEDGER_KEYS)  # every ledger key is written by some operation
    for p in patches:
        assert _unknown_keys(p, SCHEMA) == []


def test_the_status_model_is_the_ledger_plus_the_operators_keys() -> None:
    # One representation: the CRD's status schema is generated from the runtime type (no second copy).
    assert issubclass(qm.QuotaStatus, ql.Ledger) and issubclass(qm.QuotaSpec, ql.LedgerSpec)
    assert set(SCHEMA["properties"]) == set(ql.LEDGER_KEYS) | {"observedGeneration", "conditions"}
    conds = set_condition([], "Ready", True, "Valid", "ok", 1, at(0))
    assert _unknown_keys({"conditions": conds, "observedGeneration": 1}, SCHEMA) == []


def test_a_status_written_with_an_unknown_field_fails() -> None:
    # The check bites: a misspelt key in a write is reported ...
    assert _unknown_keys({"used": 1, "reservations": [{"holdr": "a"}]}, SCHEMA) == ["status.reservations[0].holdr"]
    # ... and the ledger cannot produce one: its fields are set on the model, which refuses unknown names.
    led = ql.ledger({})
    with pytest.raises(ValueError, match="usde"):
        led.usde = 1  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="amount"):
        ql.QuotaReservation(holder="a", amonut=1, at=at(0))  # type: ignore[call-arg]


def test_a_malformed_status_read_fails_loudly() -> None:
    # model_validate on read: a ledger the operator cannot trust is an error, not a silent zero.
    with pytest.raises(ValidationError, match="used"):
        ql.apply(ql.view(quota()), {"used": "many"}, ql.Consume(1), at(1))
    with pytest.raises(ValidationError, match="reservations"):
        ql.apply(ql.view(quota()), {"reservations": [{"holder": "a"}]}, ql.Consume(1), at(1))


def test_the_spec_checks_are_the_models() -> None:
    # quotaledger.view validates with LedgerSpec (what the CRD declares), not by hand.
    obj = quota()
    obj["spec"]["limit"] = ql.MAX_LIMIT + 1
    with pytest.raises(ValueError, match=r"spec\.limit: .*less than or equal"):
        ql.view(obj)
    obj = quota()
    obj["spec"]["resource"] = "Not A Key"
    with pytest.raises(ValueError, match=r"spec\.resource"):
        ql.view(obj)
