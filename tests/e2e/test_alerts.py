"""Alerts that act, end to end: a real Prometheus scrapes the test operator and evaluates the shipped rules
(helm/agentops/files/prometheus-rules.yaml), a real Alertmanager delivers to the operator's webhook
receiver, and the task is rolled back / the Agent's rollout aborted. Plus the receiver as the attack:
no token, a wrong token, an oversized body are refused and change nothing.

Prometheus and Alertmanager are Debian's `prometheus` and `prometheus-alertmanager` (make e2e-deps),
started here with 1 s scrape / evaluation / group intervals. The rules are used as shipped except that
each `for:` is cut to 1 s (the abort rule waits 4 h in production). Prometheus keeps only the series of
this module's namespaces, so the abort rule cannot touch other tests' paused canaries.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests import promnames

from .agentutil import create_agent, patch_spec, replicas_by_revision, wait_agent
from .conftest import NS_PREFIX
from .kubeutil import ROOT, apply, free_port, kget, kubectl, wait_for
from .taskutil import EDITOR, events, phase_is, task

pytestmark = [pytest.mark.e2e]
RULES = ROOT / "helm" / "agentops" / "files" / "prometheus-rules.yaml"
NO_GATES = """  gates:
  - {transition: "InProgress->Review", gates: []}
  - {transition: "Review->Done", gates: []}
  - {transition: "Done->Deployed", gates: []}
"""
# The `ns` fixture names namespaces after the test: these tests' names start with test_alert.
MY_NAMESPACES = re.escape(NS_PREFIX) + "test-alert.*"


def _receiver(operator) -> tuple[str, str]:
    """The session operator's receiver URL and token (conftest starts it with --alert-receiver-*)."""
    args = list(operator.extra_args)
    port = args[args.index("--alert-receiver-port") + 1]
    return f"http://127.0.0.1:{port}/alerts", Path(_token_file(operator)).read_text().strip()


def _token_file(operator) -> str:
    args = list(operator.extra_args)
    return str(args[args.index("--alert-receiver-token-file") + 1])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                                          **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _metric(operator, name: str, **labels: str) -> float:
    text = promnames.scrape(f"http://127.0.0.1:{operator.metrics_port}/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _payload(ns: str, task_name: str, fingerprint: str = "00000000000000aa",
             starts: str = "2026-01-01T00:00:00Z") -> bytes:
    labels = {"alertname": "ManualRollback", "agentops_action": "rollback", "namespace": ns, "agenttask": task_name}
    return json.dumps({"version": "4", "status": "firing", "receiver": "agentops", "groupKey": "{}", "alerts": [
        {"status": "firing", "labels": labels, "annotations": {"summary": "by hand"}, "startsAt": starts,
         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint}]}).encode()


def _deployed(ns: str, name: str) -> dict:
    """Moved as the CLI moves it (spec.requestedPhase and spec.by as the user), with kubectl: faster."""
    task(ns, name, NO_GATES)
    phase_is(ns, name, "Assigned")
    for phase in ("InProgress", "Review", "Done", "Deployed"):
        kubectl("patch", "agenttask", name, "-n", ns, "--type=merge", "-p",
                json.dumps({"spec": {"requestedPhase": phase, "by": EDITOR}}), as_user=EDITOR)
        t = phase_is(ns, name, phase)
    return t


# ---- the rules ---------------------------------------------------------------------------------


def _rule_exprs() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [r["expr"] for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_pass_promtool() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rule_exprs())} rules found" in out.stdout


def test_alert_rules_use_only_metrics_the_operator_exposes(operator) -> None:
    names = set().union(*(promnames.metric_names(e) for e in _rule_exprs()))
    assert {"agentops_task_stale", "agentops_agent_rollout_phase", "agentops_quota_warning"} <= names
    have = promnames.exposed(promnames.scrape(f"http://127.0.0.1:{operator.metrics_port}/metrics"))
    assert promnames.missing(names, have) == []


def test_acting_rules_carry_what_to_act_on() -> None:
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:
            action = r.get("labels", {}).get("agentops_action")
            if action == "rollback":
                assert r["labels"]["agenttask"] == "{{ $labels.task }}", r["alert"]
            elif action == "abort":  # a per-Agent series: it has the agent label
                assert all(n.startswith("agentops_agent_") for n in promnames.metric_names(r["expr"])), r["alert"]
            else:
                assert action is None, r["alert"]


# ---- Prometheus and Alertmanager ---------------------------------------------------------------


@dataclass
class Alerting:
    prometheus: str
    alertmanager: str

    def firing(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.prometheus}/api/v1/alerts", timeout=5) as resp:
            return [a for a in json.loads(resp.read())["data"]["alerts"] if a["state"] == "firing"]


def _start(cmd: list[str], log: Path, ready: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(ready, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(up, timeout=30, interval=0.3, what=f"{cmd[0]} ready")
    return proc


@pytest.fixture(scope="module")
def alerting(operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerting]:
    tmp = tmp_path_factory.mktemp("alerting")
    url, _ = _receiver(operator)
    token_file = _token_file(operator)
    rules = re.sub(r"(?m)^(\s*)for: \S+$", r"\1for: 1s", RULES.read_text())
    (tmp / "rules.yaml").write_text(rules)
    am_port, prom_port = free_port(), free_port()
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "null", "group_by": ["alertname", "namespace", "agenttask", "agent"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h",
                  "routes": [{"receiver": "agentops", "matchers": ['agentops_action=~"rollback|abort"']}]},
        "receivers": [{"name": "null"},
                      {"name": "agentops", "webhook_configs": [{
                          "url": url, "send_resolved": False,
                          "http_config": {"authorization": {"type": "Bearer", "credentials_file": token_file}}}]}],
    }))
    (tmp / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp / "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{
            "job_name": "agentops", "static_configs": [{"targets": [f"127.0.0.1:{operator.metrics_port}"]}],
            # Only this module's namespaces (and series with no namespace).
            "metric_relabel_configs": [{"source_labels": ["namespace"], "regex": f"|{MY_NAMESPACES}",
                                        "action": "keep"}],
        }],
    }))
    am = _start(["prometheus-alertmanager", f"--config.file={tmp / 'alertmanager.yml'}",
                 f"--storage.path={tmp / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                 "--cluster.listen-address=", "--log.level=debug"],
                tmp / "alertmanager.log", f"http://127.0.0.1:{am_port}/-/ready")
    prom = _start(["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'prom-data'}",
                   f"--web.listen-address=127.0.0.1:{prom_port}"],
                  tmp / "prometheus.log", f"http://127.0.0.1:{prom_port}/-/ready")
    yield Alerting(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}")
    for proc in (prom, am):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- the flows ---------------------------------------------------------------------------------


def test_alert_rolls_back_a_deployed_task_once(team: str, operator, alerting: Alerting) -> None:
    ns = team
    # The namespace opts in: a task Deployed for longer than 3 s is Stale, and the shipped rule rolls it back.
    apply(f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: policy, namespace: {ns}, labels: {{agentops.dev/gate-policy: "true"}}}}
data:
  monitoring.yaml: |
    staleAfter: {{Deployed: 3s}}
""")
    requested = _metric(operator, "agentops_alert_actions_total", action="rollback", result="requested")
    deployed_at = time.monotonic()
    _deployed(ns, "feature")
    t = phase_is(ns, "feature", "RolledBack", timeout=60)
    took = time.monotonic() - deployed_at
    last = t["status"]["history"][-1]
    assert (last["from"], last["to"], last["by"]) == ("Deployed", "RolledBack", "alertmanager")
    assert last["reason"].startswith("AgentOpsDeployedTaskStale: AgentTask " + f"{ns}/feature has been Deployed")
    assert re.fullmatch(r"alertmanager/[0-9a-f]{16}/\d+", last["key"])
    from agentops_operator.timeutil import parse_time

    prev = t["status"]["history"][-2]
    assert prev["to"] == "Deployed"
    recorded = (parse_time(last["at"]) - parse_time(prev["at"])).total_seconds()
    print(f"Deployed -> RolledBack by the alert: {recorded:.1f}s between the history entries (stale after 3s); "
          f"{took:.1f}s for the whole test flow")
    assert 3 <= recorded < 40
    msgs = wait_for(lambda: [e["message"] for e in events(ns, "feature")
                             if e["reason"] == "Transitioned" and "RolledBack" in e["message"]],
                    timeout=15, what="the Transitioned Event")
    assert any("by alertmanager" in m and "AgentOpsDeployedTaskStale" in m for m in msgs), msgs
    assert _metric(operator, "agentops_alert_actions_total", action="rollback", result="requested") == requested + 1

    # The same alert episode delivered again (an Alertmanager repeat or retry): a duplicate, nothing written.
    url, token = _receiver(operator)
    _, fingerprint, starts = last["key"].split("/")
    rv = kget("agenttask", "feature", ns)["metadata"]["resourceVersion"]
    starts_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(starts)))
    code, body = _post(url, _payload(ns, "feature", fingerprint, starts_at), {"Authorization": f"Bearer {token}"})
    assert code == 200 and body["results"][0]["result"] == "duplicate", body
    assert kget("agenttask", "feature", ns)["metadata"]["resourceVersion"] == rv
    assert len([h for h in kget("agenttask", "feature", ns)["status"]["history"] if h.get("key") == last["key"]]) == 1


@pytest.mark.kwok
def test_alert_aborts_a_paused_rollout(ns: str, operator, alerting: Alerting) -> None:
    first = create_agent(ns, "coder", {"type": "canary", "progressDeadlineSeconds": 60,
                                       "canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    old = first["status"]["stableRevision"]
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:1.1"})
    new = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="paused canary")[
        "status"]["desiredRevision"]
    # The shipped rule (for: cut to 1 s) fires, Alertmanager delivers, the operator aborts through status.
    a = wait_agent(ns, "coder", lambda a: a["status"].get("reason") == "AbortedByUser", timeout=60,
                   what="the rollout aborted by the alert")
    assert a["status"]["phase"] == "Degraded"
    assert "aborted by alertmanager: AgentOpsRolloutPausedTooLong" in a["status"]["message"]
    [(key, cmd)] = a["status"]["systemCommands"].items()
    assert re.fullmatch(r"alertmanager/[0-9a-f]{16}/\d+", key)
    assert cmd["verb"] == "abort" and cmd["by"] == "alertmanager" and cmd["applied"] is True and cmd["handledAt"]
    assert not a["metadata"].get("annotations", {}).get("agentops.dev/abort")  # no metadata written
    wait_for(lambda: replicas_by_revision(ns, "coder") == {old: 2, new: 0}, timeout=30, what="canary at zero")
    reasons = wait_for(lambda: (r := {e["reason"] for e in events(ns, "coder")}) >= {"AbortRequested", "RolledBack"}
                       and r, timeout=15, what="AbortRequested and RolledBack Events")
    assert reasons
    # The alert resolves (the rollout is no longer Paused); the abort is not repeated.
    wait_for(lambda: not [x for x in alerting.firing() if x["labels"].get("namespace") == ns], timeout=20,
             what="the alert to resolve")
    assert len(kget("agents.agentops.dev", "coder", ns)["status"]["systemCommands"]) == 1


def test_alert_receiver_refuses_without_the_token_and_changes_nothing(team: str, operator) -> None:
    ns = team
    url, token = _receiver(operator)
    t = _deployed(ns, "prod")
    rv = t["metadata"]["resourceVersion"]
    body = _payload(ns, "prod")
    refused = _metric(operator, "agentops_alert_webhook_requests_total", code="401")
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {token}x"},
                    {"Authorization": f"Basic {token}"}, {"Authorization": token}):
        code, reply = _post(url, body, headers)
        assert code == 401 and reply == {"error": "unauthorized"}, (headers, code, reply)
    assert _metric(operator, "agentops_alert_webhook_requests_total", code="401") == refused + 5
    # Authenticated but oversized, or not an Alertmanager payload: refused before anything is decided.
    code, reply = _post(url, b" " * (300 * 1024), {"Authorization": f"Bearer {token}"})
    assert code == 413, reply
    code, reply = _post(url, body.replace(b'"4"', b'"3"'), {"Authorization": f"Bearer {token}"})
    assert code == 400 and reply["error"].startswith("version"), reply
    time.sleep(1)
    now = kget("agenttask", "prod", ns)
    assert now["metadata"]["resourceVersion"] == rv and now["status"]["phase"] == "Deployed"
    # The very same body with the token is carried out (so the refusals above were the token's doing).
    code, reply = _post(url, body, {"Authorization": f"Bearer {token}"})
    assert code == 200 and reply["results"][0]["result"] == "requested", reply
    last = phase_is(ns, "prod", "RolledBack")["status"]["history"][-1]
    assert last["by"] == "alertmanager" and last["reason"] == "ManualRollback: by hand"


# ---- the chart ---------------------------------------------------------------------------------


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["helm", "template", "r", str(ROOT / "helm" / "agentops"), "-n", "ops", *args],
                          capture_output=True, text=True, timeout=60)


def test_alert_chart_renders_the_rules_and_the_receiver() -> None:
    out = _helm("--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
                "--set", "metrics.prometheusRule.enabled=true", "--set", "alertReceiver.enabled=true",
                "--set", "alertReceiver.tokenSecret.name=am-token",
                "--set", "networkPolicy.enabled=true",
                "--set", "networkPolicy.alertReceiverFrom[0].namespaceSelector.matchLabels.team=monitoring")
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout) if d}
    # The PrometheusRule is the plain rule file, verbatim ({{ $labels }} left to Prometheus).
    assert docs["PrometheusRule"]["spec"] == yaml.safe_load(RULES.read_text())
    c = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert "--alert-receiver-token-file=/etc/agentops/alert-receiver/token" in c["args"]
    assert {"name": "alerts", "containerPort": 9095} in c["ports"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "alert-receiver-token")
    assert vol["secret"]["secretName"] == "am-token" and vol["secret"]["items"] == [{"key": "token", "path": "token"}]
    port = {"name": "alerts", "port": 9095, "targetPort": "alerts", "protocol": "TCP"}
    assert port in docs["Service"]["spec"]["ports"]
    rules = docs["NetworkPolicy"]["spec"]["ingress"]
    alerts_rule = next(r for r in rules if r["ports"] == [{"port": "alerts", "protocol": "TCP"}])
    assert alerts_rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
    assert all({"port": "alerts", "protocol": "TCP"} not in r["ports"] for r in rules if r is not alerts_rule)
    # Off by default; on without a token Secret it refuses to render.
    default = _helm()
    assert "PrometheusRule" not in default.stdout and "alert-receiver" not in default.stdout
    bad = _helm("--set", "alertReceiver.enabled=true")
    assert bad.returncode != 0 and "alertReceiver.tokenSecret.name" in bad.stderr
