"""Token budgets from agents' own telemetry: an agent process records `gen_ai.client.token.usage` with the
real OpenTelemetry SDK under its ServiceAccount token; the worker library's exporter charges it to the
Hard `tokens` Quota (and `tokens/<model>`), a re-export charges nothing, the spent budget refuses the
next usage, and the operator's per-agent counter shows what the ledgers recorded. Another agent cannot
charge in dev-1's name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import EDITOR, cli, events
from .test_workers import agent_kubeconfig

MODEL = "gpt-4o-mini"


def quotas(ns: str) -> None:
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: tokens, namespace: {ns}}}
spec: {{resource: tokens, limit: 1000, window: daily, enforcement: Hard,
        selector: {{matchLabels: {{team: search}}}}}}
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: tokens-mini, namespace: {ns}}}
spec: {{resource: tokens/{MODEL}, limit: 100000, window: daily}}
---
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: tokens-other-team, namespace: {ns}}}
spec: {{resource: tokens, limit: 0, window: daily, selector: {{matchLabels: {{team: other}}}}}}
""")
    for q in ("tokens", "tokens-mini", "tokens-other-team"):
        wait_for(lambda q=q: (kget("quota", q, ns).get("status") or {}).get("resetAt"), timeout=30,
                 what=f"quota {q} window started")


def run_agent(ns: str, agent: str, kubeconfig: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}  # only the agent's own token
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "token_agent.py"), "--agent", agent, "--namespace", ns,
         "--kubeconfig", str(kubeconfig), "--model", MODEL, *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    return proc.returncode, lines


def metric_values(operator, name: str) -> dict[str, float]:
    args = list(operator.proc.args)
    port = args[args.index("--metrics-port") + 1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}}) (\S+)$", text, re.M)}


def test_an_agent_spends_its_token_budget_through_opentelemetry(ns: str, operator, tmp_path: Path) -> None:
    cli(ns, "init", "--editor", EDITOR, "--agent", "dev-1", "--agent", "dev-2", "--no-gate-policy")
    for agent in ("dev-1", "dev-2"):
        cli(ns, "agent", "add", agent, "--role", "developer")
    kubectl("label", "agent", "dev-1", "team=search", "-n", ns)
    quotas(ns)
    cfg = agent_kubeconfig(ns, "dev-1", tmp_path)

    # 800 then 200 tokens fit the Hard budget of 1000 exactly; every export is retried once (same data).
    code, lines = run_agent(ns, "dev-1", cfg, "--call", "600:200", "--call", "150:50", "--reexport")
    assert code == 0, lines
    assert [x["action"] for x in lines] == ["charged", "charged"], lines
    timings = {"flushSeconds": [x["flushSeconds"] for x in lines]}  # 2 series -> 2 charges x 2 Quotas each
    q = kget("quota", "tokens", ns)["status"]
    assert (q["used"], q["reserved"], q["remaining"]) == (1000, 0, 0), q  # the re-exports charged nothing
    held = sorted(c["holder"] for c in q["committed"])
    assert len(held) == 4 and all(h.startswith("Tokens/dev-1/") for h in held), held
    assert kget("quota", "tokens-mini", ns)["status"]["used"] == 1000  # the model's own budget too
    assert kget("quota", "tokens-other-team", ns)["status"]["used"] == 0  # selector: the Agent's labels

    # Spent: the next usage is refused - before the call (budget.require) and, when made anyway, at the
    # charge; nothing is charged past the limit.
    code, lines = run_agent(ns, "dev-1", cfg, "--call", "10:10", "--force")
    assert code == 3, lines
    assert lines[0]["action"] == "refused-before" and "tokens" in lines[0]["message"], lines
    assert lines[1]["action"] == "refused" and lines[1]["refused"] == 20, lines
    timings["refusedFlushSeconds"] = [lines[1]["flushSeconds"]]
    (ROOT / ".cluster" / "token-timings.json").write_text(json.dumps(timings))
    assert lines[1]["message"].startswith("quota tokens: QuotaExceeded"), lines
    assert kget("quota", "tokens", ns)["status"]["used"] == 1000
    cond = wait_for(lambda: next((c for c in kget("quota", "tokens", ns)["status"].get("conditions", [])
                                  if c["type"] == "Exhausted" and c["status"] == "True"), None),
                    timeout=30, what="tokens Exhausted")
    assert cond["reason"] == "LimitReached"
    assert any(e["reason"] == "QuotaExhausted" for e in events(ns, "tokens"))

    # The operator's counter, from the ledgers' commits (each charge once, though it hit two Quotas).
    def per_agent() -> dict[str, float] | None:
        v = metric_values(operator, "agentops_agent_tokens_total")
        mine = {k: x for k, x in v.items() if f'namespace="{ns}"' in k}
        return mine if sum(mine.values()) >= 1000 else None

    mine = wait_for(per_agent, timeout=30, what="agentops_agent_tokens_total for dev-1")
    by_type = {re.search(r'type="(\w+)"', k).group(1): x for k, x in mine.items()}  # type: ignore[union-attr]
    assert by_type == {"input": 750.0, "output": 250.0}, mine
    assert all('agent="dev-1"' in k and f'model="{MODEL}"' in k for k in mine), mine


def test_an_agent_cannot_charge_tokens_in_another_agents_name(ns: str, operator) -> None:
    cli(ns, "init", "--editor", EDITOR, "--agent", "dev-1", "--agent", "dev-2", "--no-gate-policy")
    apply(f"""
apiVersion: agentops.dev/v1alpha1
kind: Quota
metadata: {{name: tokens, namespace: {ns}}}
spec: {{resource: tokens, limit: 1000}}
""")
    wait_for(lambda: (kget("quota", "tokens", ns).get("status") or {}).get("resetAt"), timeout=30,
             what="window started")

    def reserve(holder: str, as_user: str) -> subprocess.CompletedProcess[str]:
        q = kget("quota", "tokens", ns)
        st = q["status"]
        body = {"metadata": {"resourceVersion": q["metadata"]["resourceVersion"]},
                "status": {"reservations": [*st.get("reservations", []),
                                            {"holder": holder, "amount": 5, "at": st["windowStart"],
                                             "by": as_user}],  # the maker's own name, as quota_client writes
                           "reserved": st["reserved"] + 5, "remaining": st["remaining"] - 5}}
        return kubectl("patch", "quota", "tokens", "-n", ns, "--subresource=status", "--type=merge",
                       "-p", json.dumps(body), as_user=as_user, check=False)

    dev2 = f"system:serviceaccount:{ns}:agent-dev-2"
    forged = "Tokens/dev-1/abcd/input/-/1/c0-5"
    proc = reserve(forged, dev2)  # another agent charging in dev-1's name
    assert proc.returncode != 0 and "only by that Agent's ServiceAccount" in proc.stderr, proc.stderr
    # nor a person who holds the agents' rights on quotas (only the operator is exempt)
    kubectl("create", "rolebinding", "carol-agent", "--clusterrole=agentops-agent", "--user=carol", "-n", ns)
    proc = reserve(forged, "carol")
    assert proc.returncode != 0 and "only by that Agent's ServiceAccount" in proc.stderr, proc.stderr
    assert not kget("quota", "tokens", ns)["status"].get("reservations")
    proc = reserve("Tokens/dev-2/abcd/input/-/1/c0-5", dev2)  # its own name: allowed
    assert proc.returncode == 0, proc.stderr
