"""Leader election settings: the timing rules that make takeover safe are enforced at start-up."""

from __future__ import annotations

import os
import socket

import pytest

from agentops_operator.leader import LeaseConfig, default_identity
from agentops_operator.settings import Settings


def test_pod_id_is_the_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "agentops-7d9c-abcde")
    assert default_identity() == "agentops-7d9c-abcde"
    assert Settings.from_args([]).identity == "agentops-7d9c-abcde"
    monkeypatch.delenv("POD_ID")
    assert default_identity() == f"{socket.gethostname()}-{os.getpid()}"


def test_leader_election_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTOPS_LEADER_ELECT", raising=False)
    assert Settings.from_args([]).leader_elect is False
    assert Settings.from_args(["--leader-elect"]).leader_elect is True
    monkeypatch.setenv("AGENTOPS_LEADER_ELECT", "1")
    assert Settings.from_args([]).leader_elect is True
    assert Settings.from_args(["--no-leader-elect"]).leader_elect is False


@pytest.mark.parametrize(("retry", "renew", "duration"), [(2, 7, 7), (7, 2, 10), (0, 5, 10), (2, 12, 10)])
def test_leader_must_stop_before_a_standby_may_take_over(retry: float, renew: float, duration: float) -> None:
    # The holder gives up after renew_deadline; a standby takes over after lease_duration. If the
    # deadline were not shorter, two replicas could act at once.
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseConfig("l", "ns", "me", lease_duration=duration, renew_deadline=renew, retry_period=retry)
