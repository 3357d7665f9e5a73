"""Quota end to end: resets (on time and caught up after downtime), atomic use by concurrent clients,
Soft warnings, reservations, the CLI and RBAC, all against the real API server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kubernetes import client, config

from agentops_operator import quota_client
from agentops_operator.quotaledger import parse_time

from .kubeutil import ROOT, apply, kget, kubectl, wait_for

pytestmark = pytest.mark.e2e


def api() -> client.CustomObjectsApi:
    """A client of its own (own ApiClient, own connection pool), as a separate agent would have."""
    return client.CustomObjectsApi(config.new_client_from_config())


def make_quota(ns: str, name: str, **spec: Any) -> None:
    apply(json.dumps({"apiVersion": "agentops.dev/v1alpha1", "kind": "Quota",
                      "metadata": {"name": name, "namespace": ns}, "spec": spec}))


def status(ns: str, name: str) -> dict[str, Any]:
    return kget("quotas.agentops.dev", name, ns).get("status") or {}


def initialised(ns: str, name: str) -> dict[str, Any]:
    return wait_for(lambda: (s := status(ns, name)).get("resetAt") and s.get("conditions") and s, timeout=30,
                    what=f"quota {name} initialised by the operator")


def events(ns: str, name: str, reason: str) -> list[str]:
    out = kubectl("get", "events", "-n", ns, "-o", "json",
                  f"--field-selector=involvedObject.name={name},reason={reason}").stdout
    return [e["message"] for e in json.loads(out)["items"]]


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in st.get("conditions") or [] if c["type"] == type_)


def cli(ns: str, *args: str, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "agentops_operator.cli", "-n", ns]
    if as_user:
        cmd += ["--as", as_user]
    return subprocess.run([*cmd, "quota", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


# ---- resets --------------------------------------------------------------------------------------


def test_reset_fires_at_reset_at_with_an_event(ns: str, operator) -> None:
    make_quota(ns, "burst", resource="api-calls", limit=5, window="10s")
    initialised(ns, "burst")
    g = quota_client.consume(api(), ns, "burst", 3, by="e2e")
    assert g.granted and g.used == 3
    window_end = g.reset_at
    assert window_end is not None

    st = wait_for(lambda: (s := status(ns, "burst")).get("lastReset", {}).get("usedBefore") == 3 and s,
                  timeout=30, what="the reset after the window with 3 used")
    last = st["lastReset"]
    assert last["by"] == "operator"
    assert parse_time(last["previousResetAt"]) == window_end
    assert last["windowsElapsed"] == 1
    lateness = parse_time(last["at"]) - window_end
    print(f"\nreset written {lateness.total_seconds():.2f}s after resetAt")
    # The test operator re-lists every 10 s: well under that means the reset was scheduled for resetAt.
    assert timedelta(0) <= lateness < timedelta(seconds=6), "the operator resets at resetAt, not at a resync"
    assert st["used"] == 0 and st["remaining"] == 5
    assert parse_time(st["windowStart"]) >= window_end
    msgs = wait_for(lambda: events(ns, "burst", "QuotaReset"), timeout=10, what="QuotaReset event")
    assert any("used 3 reset to 0" in m for m in msgs)


def test_reset_missed_during_downtime_is_caught_up_at_start(ns: str, operator) -> None:
    make_quota(ns, "downtime", resource="api-calls", limit=5, window="10s")
    initialised(ns, "downtime")
    g = quota_client.consume(api(), ns, "downtime", 4)
    assert g.granted and g.reset_at is not None
    operator.stop()
    try:
        sleep_until(g.reset_at + timedelta(seconds=21))  # three window ends pass while it is down
        st = status(ns, "downtime")
        assert (st["used"], parse_time(st["resetAt"])) == (4, g.reset_at), "nothing reset while the operator was down"
    finally:
        operator.start()
    st = wait_for(lambda: (s := status(ns, "downtime")).get("lastReset") and s, timeout=30, what="catch-up reset")
    last = st["lastReset"]
    assert last["by"] == "operator" and last["usedBefore"] == 4
    assert last["windowsElapsed"] >= 3
    assert st["used"] == 0
    assert parse_time(st["resetAt"]) > datetime.now(UTC) - timedelta(seconds=1)
    msgs = wait_for(lambda: events(ns, "downtime", "QuotaReset"), timeout=10, what="QuotaReset event")
    assert any("caught up" in m and "used 4 reset to 0" in m for m in msgs), msgs


def test_call_after_reset_at_while_operator_is_down_gets_the_new_window(ns: str, operator) -> None:
    make_quota(ns, "full", resource="publish", limit=2, window="10s")
    initialised(ns, "full")
    first = quota_client.consume(api(), ns, "full", 2)
    assert first.granted and first.reset_at is not None
    refused = quota_client.consume(api(), ns, "full", 1)
    assert not refused.granted and "QuotaExceeded" in refused.message and "resets at" in refused.message
    operator.stop()
    try:
        sleep_until(first.reset_at + timedelta(seconds=1))
        g = quota_client.consume(api(), ns, "full", 2, by="late-agent")
        assert g.granted, g.message  # never refused for a window that has ended
        st = status(ns, "full")
        assert st["used"] == 2 and st["lastReset"]["by"] == "client:late-agent"
        assert st["lastReset"]["eventRecorded"] is False
    finally:
        operator.start()
    msgs = wait_for(lambda: events(ns, "full", "QuotaReset"), timeout=30, what="QuotaReset for a client rollover")
    assert any("rolled over by client:late-agent" in m for m in msgs)
    assert wait_for(lambda: status(ns, "full")["lastReset"]["eventRecorded"], timeout=10)


# ---- atomic use ----------------------------------------------------------------------------------


def test_20_clients_x_50_uses_on_a_hard_quota_of_500(ns: str, operator) -> None:
    make_quota(ns, "api-calls", resource="api-calls", limit=500, window="24h", enforcement="Hard")
    initialised(ns, "api-calls")
    clients, uses = 20, 50
    results: list[list[quota_client.Grant]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        own = api()
        start.wait()
        try:
            for _ in range(uses):
                results[i].append(quota_client.consume(own, ns, "api-calls", 1, by=f"client-{i}"))
        except BaseException as exc:  # surfaced below: a lost thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    assert not errors, errors
    grants = [g for r in results for g in r]
    granted = sum(g.granted for g in grants)
    conflicts = sum(g.conflicts for g in grants)
    st = status(ns, "api-calls")
    print(f"\n{clients} clients x {uses} uses: granted={granted} refused={len(grants) - granted} used={st['used']} "
          f"elapsed={elapsed:.2f}s conflict_retries={conflicts} grants/s={granted / elapsed:.1f}")
    assert len(grants) == clients * uses
    assert granted == 500
    assert len(grants) - granted == 500
    assert st["used"] == 500 and st["remaining"] == 0
    # Refusals only ever happen against a full quota, and say so.
    assert all(g.used == 500 and g.message.startswith("QuotaExceeded") for g in grants if not g.granted)
    exhausted = wait_for(lambda: (c := condition(status(ns, "api-calls"), "Exhausted"))["status"] == "True" and c,
                         timeout=20, what="Exhausted condition")
    assert exhausted["reason"] == "LimitReached"
    assert exhausted["observedGeneration"] == kget("quotas.agentops.dev", "api-calls", ns)["metadata"]["generation"]
    assert wait_for(lambda: events(ns, "api-calls", "QuotaExhausted"), timeout=10)


def test_soft_quota_warns_and_allows(ns: str, operator) -> None:
    make_quota(ns, "tokens", resource="tokens", limit=5, window="24h", enforcement="Soft", warningPercent=60)
    initialised(ns, "tokens")
    r = cli(ns, "use", "tokens", "--amount", "3")
    assert r.returncode == 0, r.stderr
    warn = wait_for(lambda: (c := condition(status(ns, "tokens"), "Warning"))["status"] == "True" and c,
                    timeout=20, what="Warning condition at 60%")
    assert warn["reason"] == "AboveThreshold"
    assert wait_for(lambda: events(ns, "tokens", "QuotaWarning"), timeout=10)
    r = cli(ns, "use", "tokens", "--amount", "3")
    assert r.returncode == 0, r.stderr  # over the limit, still allowed
    assert "over the soft limit" in r.stdout
    st = wait_for(lambda: (s := status(ns, "tokens")) and condition(s, "Warning")["reason"] == "SoftLimitExceeded"
                  and s, timeout=20, what="SoftLimitExceeded condition")
    assert st["used"] == 6
    assert condition(st, "Exhausted")["reason"] == "SoftLimitExceeded"
    gen = kget("quotas.agentops.dev", "tokens", ns)["metadata"]["generation"]
    assert all(c["observedGeneration"] == gen for c in st["conditions"])
    msgs = wait_for(lambda: events(ns, "tokens", "QuotaSoftLimitExceeded"), timeout=10, what="soft limit event")
    assert "6 used + 0 reserved of 5 tokens (120%)" in msgs[0]


# ---- reservations --------------------------------------------------------------------------------


def test_reserve_commit_release_and_no_two_squeeze_through(ns: str, operator) -> None:
    make_quota(ns, "publish", resource="publish", limit=5, window="24h")
    initialised(ns, "publish")
    # Ten holders race for five units: exactly five reservations are granted.
    outcomes: dict[str, bool] = {}

    def hold(i: int) -> None:
        outcomes[f"h{i}"] = quota_client.reserve(api(), ns, "publish", f"h{i}", 1, reason="race").granted

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = sorted(h for h, ok in outcomes.items() if ok)
    assert len(winners) == 5
    st = status(ns, "publish")
    assert st["reserved"] == 5 and sorted(r["holder"] for r in st["reservations"]) == winners
    refused = quota_client.consume(api(), ns, "publish", 1)
    assert not refused.granted and "QuotaExceeded" in refused.message

    a, b, *rest = winners
    again = quota_client.reserve(api(), ns, "publish", a, 1)
    assert again.granted and "already reserved" in again.message
    quota_client.commit(api(), ns, "publish", a)
    quota_client.commit(api(), ns, "publish", a)  # idempotent
    quota_client.release(api(), ns, "publish", b)
    quota_client.release(api(), ns, "publish", b)  # idempotent
    for h in rest:
        quota_client.release(api(), ns, "publish", h)
    st = status(ns, "publish")
    assert (st["used"], st["reserved"], st["reservations"], st["remaining"]) == (1, 0, [], 4)


def test_reservation_of_a_deleted_task_is_released(ns: str, operator) -> None:
    make_quota(ns, "publish", resource="publish", limit=3, window="24h")
    initialised(ns, "publish")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: AgentTask
metadata: {{name: doomed, namespace: {ns}}}
spec: {{title: Deleted mid-move}}
""")
    uid = kget("agenttask", "doomed", ns)["metadata"]["uid"]
    holder = f"AgentTask/doomed/{uid}/Done->Deployed/0"
    assert quota_client.reserve(api(), ns, "publish", holder, 2, reason="doomed: Done->Deployed").granted
    kubectl("delete", "agenttask", "doomed", "-n", ns, "--wait=true")
    kubectl("annotate", "quotas.agentops.dev", "publish", "-n", ns, "touch=1")  # a watch event, no waiting for resync
    st = wait_for(lambda: (s := status(ns, "publish"))["reserved"] == 0 and s, timeout=30, what="orphan released")
    assert st["used"] == 0 and st["remaining"] == 3
    assert wait_for(lambda: events(ns, "publish", "QuotaReleased"), timeout=10)


# ---- CLI, RBAC, validation -----------------------------------------------------------------------


def test_cli_set_use_check(ns: str, operator) -> None:
    r = cli(ns, "set", "deploys", "--limit", "2", "--window", "weekly", "--time-zone", "Europe/Berlin")
    assert r.returncode == 0, r.stderr
    spec = kget("quotas.agentops.dev", "deploys", ns)["spec"]
    assert (spec["resource"], spec["limit"], spec["window"], spec["timeZone"]) == ("deploys", 2, "weekly",
                                                                                  "Europe/Berlin")
    st = initialised(ns, "deploys")
    assert datetime.fromisoformat(st["windowStart"]).astimezone(ZoneInfo("Europe/Berlin")).strftime("%a %H:%M") \
        == "Mon 00:00"
    assert cli(ns, "use", "deploys", "--amount", "2").returncode == 0
    r = cli(ns, "use", "deploys")
    assert r.returncode == 1
    assert "QuotaExceeded: 1 requested, 0 of 2 available" in r.stderr and "resets at" in r.stderr
    r = cli(ns, "check", "deploys")
    assert r.returncode == 1 and "would be refused" in r.stdout
    r = cli(ns, "set", "deploys", "--limit", "3")
    assert r.returncode == 0, r.stderr
    r = cli(ns, "check", "deploys", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["remaining"] == 1
    r = cli(ns, "use", "deploys", "-o", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["used"] == 3
    g = quota_client.use("deploys", 1, namespace=ns, by="helper")  # the documented Python helper
    assert not g.granted and g.used == 3 and g.reset_at is not None
    r = cli(ns, "set", "deploys", "--limit", "3", "--window", "0s")
    assert r.returncode == 1 and "invalid window '0s'" in r.stderr
    assert cli(ns, "use", "missing").returncode == 1


def test_agents_may_use_quotas_viewers_may_not(ns: str, operator) -> None:
    make_quota(ns, "api-calls", resource="api-calls", limit=10, window="1h")
    initialised(ns, "api-calls")
    kubectl("create", "serviceaccount", "agent-worker", "-n", ns)
    kubectl("create", "rolebinding", "worker-agent", "--clusterrole=agentops-agent",
            f"--serviceaccount={ns}:agent-worker", "-n", ns)
    kubectl("create", "rolebinding", "someone-view", "--clusterrole=agentops-viewer", "--user=someone", "-n", ns)
    agent = f"system:serviceaccount:{ns}:agent-worker"
    r = wait_for(lambda: (p := cli(ns, "use", "api-calls", "--amount", "2", as_user=agent)).returncode == 0 and p,
                 timeout=20, what="agent allowed (RBAC caches settle)")
    assert "granted 2" in r.stdout
    r = cli(ns, "use", "api-calls", as_user="someone")
    assert r.returncode == 1 and "forbidden" in r.stderr.lower()
    assert status(ns, "api-calls")["used"] == 2


def test_invalid_time_zone_is_reported_and_refuses(ns: str, operator) -> None:
    make_quota(ns, "mars", resource="api-calls", limit=10, window="daily", timeZone="Mars/Olympus_Mons")
    ready = wait_for(lambda: (s := status(ns, "mars")).get("conditions") and condition(s, "Ready"), timeout=30)
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.timeZone" in ready["message"]
    g = quota_client.consume(api(), ns, "mars", 1)
    assert not g.granted and "spec.timeZone" in g.message

