"""Agent blue-green delivery on the real cluster: preview, promotion, switch-back, scale-down delay."""

from __future__ import annotations

import time

import pytest

from .agentutil import (
    analysis,
    cli,
    condition,
    core,
    create_agent,
    get_agent,
    job_metric,
    patch_spec,
    record_timing,
    replicas_by_revision,
    roll_out_never_ready,
    time_failure_to_rollback,
    wait_agent,
    wait_events,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]


def blue_green(deadline: int = 30, **kw: object) -> dict:
    return {"type": "blueGreen", "progressDeadlineSeconds": deadline, "blueGreen": kw}


def selector(ns: str, svc: str) -> dict[str, str] | None:
    try:
        return core().read_namespaced_service(svc, ns).spec.selector
    except Exception:
        return None


def test_blue_green_manual_promotion_switches_and_scales_down_after_delay(ns: str, operator) -> None:
    first = create_agent(ns, "coder", blue_green(autoPromotionEnabled=False, scaleDownDelaySeconds=10,
                                                 prePromotionAnalysis=analysis(job_metric("pre"))))
    old = first["status"]["stableRevision"]
    assert selector(ns, "coder") == {"agentops.dev/agent": "coder", "agentops.dev/revision": old}
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:2"})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="preview ready, waiting")
    new = a["status"]["desiredRevision"]
    assert a["status"]["reason"] == "AwaitingPromotion" and a["status"]["lastAnalysis"]["phase"] == "Successful"
    assert selector(ns, "coder-preview") == {"agentops.dev/agent": "coder", "agentops.dev/revision": new}
    assert selector(ns, "coder")["agentops.dev/revision"] == old  # type: ignore[index]
    assert replicas_by_revision(ns, "coder") == {old: 2, new: 2}

    cli(ns, "agent", "promote", "coder")
    wait_agent(ns, "coder", lambda a: selector(ns, "coder").get("agentops.dev/revision") == new,  # type: ignore[union-attr]
               what="active Service switched")
    switched = time.monotonic()
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                   and a["status"].get("stableRevision") == new, what="healthy on new")
    assert replicas_by_revision(ns, "coder").get(old) == 2  # old kept for a fast switch-back
    wait_agent(ns, "coder", lambda a: old not in replicas_by_revision(ns, "coder"), what="old scaled down")
    assert time.monotonic() - switched >= 7  # scaleDownDelaySeconds (10 s: long enough to observe the old
    # revision kept on a loaded machine), minus slack for noticing the switch late
    assert selector(ns, "coder-preview") is None
    wait_events(ns, "coder", "Switched", "RolloutCompleted")


def test_blue_green_failed_post_promotion_analysis_switches_back(ns: str, operator) -> None:
    post = analysis(job_metric("post", fail=True, message="p99 latency 2.3s > 1s"))
    first = create_agent(ns, "coder", blue_green(postPromotionAnalysis=post, scaleDownDelaySeconds=1))
    old = first["status"]["stableRevision"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:slow"})
    wait_agent(ns, "coder", lambda a: a["status"].get("currentStep") == "post-promotion", what="switched")
    new = get_agent(ns, "coder")["status"]["desiredRevision"]

    def switched_back() -> bool:
        return (selector(ns, "coder") or {}).get("agentops.dev/revision") == old

    seconds = time_failure_to_rollback(ns, "coder", switched_back)
    record_timing("blueGreen: failed post-promotion Job analysis -> active Service switched back", seconds)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="Degraded")
    assert a["status"]["reason"] == "AnalysisFailed" and "p99 latency 2.3s > 1s" in a["status"]["message"]
    assert a["status"]["stableRevision"] == old and a["status"]["desiredRevision"] == new
    assert condition(a, "RolledBack")["status"] == "True"
    wait_agent(ns, "coder", lambda a: replicas_by_revision(ns, "coder") == {old: 2, new: 0}, what="new at 0")
    wait_events(ns, "coder", "SwitchedBack")


def test_blue_green_failed_pre_promotion_analysis_never_switches(ns: str, operator) -> None:
    pre = analysis(job_metric("pre", fail=True))
    first = create_agent(ns, "coder", blue_green(prePromotionAnalysis=pre))
    old = first["status"]["stableRevision"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:3"})
    wait_agent(ns, "coder", lambda a: get_agent(ns, "coder")["status"].get("previewRevision") is not None,
               what="preview")
    new = get_agent(ns, "coder")["status"]["desiredRevision"]
    seconds = time_failure_to_rollback(ns, "coder", lambda: replicas_by_revision(ns, "coder").get(new) == 0)
    record_timing("blueGreen: failed pre-promotion Job analysis -> preview at 0", seconds)
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="Degraded")
    assert a["status"]["stableRevision"] == old
    assert selector(ns, "coder")["agentops.dev/revision"] == old  # type: ignore[index]


def test_blue_green_preview_never_ready_rolls_back(ns: str, operator) -> None:
    a, old = roll_out_never_ready(ns, blue_green(deadline=6), "blueGreen")
    assert a["status"]["reason"] == "ProgressDeadlineExceeded" and a["status"]["stableRevision"] == old
    assert selector(ns, "coder")["agentops.dev/revision"] == old  # type: ignore[index]
    assert replicas_by_revision(ns, "coder")[old] == 2
