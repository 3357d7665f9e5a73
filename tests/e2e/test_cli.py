"""`kubectl agentops` commands of the original framework against the real cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .kubeutil import ROOT, apply, kget, kubectl, wait_for
from .taskutil import APPROVER, EDITOR, cli, phase_is

ARTIFACTS = ROOT / ".cluster" / "artifacts"
VIEWER = "carol"


def heartbeat(ns: str, agent: str) -> None:
    """Renew an external agent's Lease by hand (what the worker library does)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    apply(f"""
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: {agent}, namespace: {ns}, labels: {{agentops.dev/agent: {agent}}}}}
spec: {{holderIdentity: {agent}, renewTime: "{now}", leaseDurationSeconds: 600}}
""")


def test_init_is_idempotent_and_scopes_a_viewer_to_its_namespace(ns: str, operator) -> None:
    args = ("init", "--editor", EDITOR, "--approver", APPROVER, "--viewer", VIEWER, "--agent", "dev-1",
            "--quota", "publish=5/daily")
    first = cli(ns, *args).stdout
    assert first.count(" created") == 6, first
    second = cli(ns, *args).stdout
    assert second.count(" created") == 0 and second.count("unchanged (exists)") == 6, second
    cm = kget("configmap", "agentops-gates", ns)
    assert cm["metadata"]["labels"]["agentops.dev/gate-policy"] == "true"
    q = kget("quota", "publish", ns)["spec"]
    assert (q["resource"], q["limit"], q["window"]) == ("publish", 5, "daily")
    # The viewer's RoleBinding is in this namespace only: -n works, -A is refused in one line.
    cli(ns, "task", "add", "t1", "--title", "Write docs", as_user=EDITOR)
    out = cli(ns, "dashboard", as_user=VIEWER).stdout
    assert "t1" in out and "Write docs" in out and "publish" in out
    proc = cli(ns, "dashboard", "-A", as_user=VIEWER, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and "forbidden to list agentops objects across all namespaces" in proc.stderr
    # Refusals are one line, exit 1 (a viewer may not create tasks).
    proc = cli(ns, "task", "add", "t2", as_user=VIEWER, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "forbidden" in proc.stderr
    listed = json.loads(cli(ns, "task", "list", "-o", "json", as_user=VIEWER).stdout)
    assert [t["metadata"]["name"] for t in listed] == ["t1"]


def test_agent_add_list_remove_and_one_step_sign_off(ns: str, operator) -> None:
    cli(ns, "init", "--editor", EDITOR, "--approver", APPROVER)
    out = cli(ns, "agent", "add", "dev-1", "--role", "developer", "--capability", "python",
              "--heartbeat-timeout", "600", as_user=EDITOR).stdout
    assert "created" in out and "external" in out
    assert "adopted" in cli(ns, "agent", "add", "dev-1", "--role", "developer", "--max-concurrent", "3",
                            as_user=EDITOR).stdout
    assert kget("agent", "dev-1", ns)["spec"]["maxConcurrentTasks"] == 3
    heartbeat(ns, "dev-1")
    wait_for(lambda: "HeartbeatFresh" in cli(ns, "agent", "list").stdout, timeout=30, what="dev-1 Ready")
    row = next(line for line in cli(ns, "agent", "list").stdout.splitlines() if "dev-1" in line)
    assert "external" in row and "python" in row
    cli(ns, "task", "add", "s1", "--title", "Sign me off", "--role", "developer", as_user=EDITOR)
    phase_is(ns, "s1", "Assigned")
    cli(ns, "task", "move", "s1", "InProgress", as_user=EDITOR)
    phase_is(ns, "s1", "InProgress")
    cli(ns, "task", "move", "s1", "Review", "--output", "pr/1", as_user=EDITOR)
    phase_is(ns, "s1", "Review", timeout=90)
    # An approval with no pending move says so, and waits.
    out = cli(ns, "task", "approve", "s1", as_user=APPROVER).stdout
    assert "no Review->Done move is pending" in out, out
    time.sleep(1)
    assert kget("agenttask", "s1", ns)["status"]["phase"] == "Review"
    # The original one-step sign-off: approve and request the move in one command (one write).
    out = cli(ns, "task", "approve", "s1", "--move", "--reason", "lgtm", as_user=APPROVER).stdout
    assert f"requested Done as {APPROVER}" in out, out
    t = phase_is(ns, "s1", "Done")
    assert t["status"]["history"][-1]["by"] == APPROVER
    # Rolled back after deploy, with the reason in the audit trail.
    cli(ns, "task", "move", "s1", "Deployed", "--deploy-version", "1.0", as_user=EDITOR)
    phase_is(ns, "s1", "Deployed", timeout=90)
    cli(ns, "task", "rollback", "s1", "--reason", "broke search", as_user=EDITOR)
    t = phase_is(ns, "s1", "RolledBack")
    assert t["status"]["history"][-1]["notes"] == "broke search"
    history = cli(ns, "task", "history", "s1").stdout
    assert "Deployed -> RolledBack" in history
    # Removing an agent without open tasks just deletes it.
    assert "deleted" in cli(ns, "agent", "remove", "dev-1", as_user=EDITOR).stdout
    assert kubectl("get", "agent", "dev-1", "-n", ns, check=False).returncode != 0


def test_monitor_fires_for_stale_tasks_and_exhausted_quotas(ns: str, operator, tmp_path: Path) -> None:
    cli(ns, "init", "--quota", "publish=2/daily", "--no-gate-policy")
    cli(ns, "task", "add", "old", "--title", "Waits forever")
    wait_for(lambda: kget("quota", "publish", ns).get("status", {}).get("resetAt"), timeout=30, what="quota ready")
    alerts = tmp_path / "alerts.jsonl"
    proc = cli(ns, "monitor", "--check-quota", "--alert-to", str(alerts), check=False)
    assert proc.returncode == 0 and "nothing fired" in proc.stdout, proc.stdout + proc.stderr
    assert not alerts.exists()
    cli(ns, "quota", "use", "publish", "--amount", "2")
    wait_for(lambda: any(c["type"] == "Exhausted" and c["status"] == "True"
                         for c in kget("quota", "publish", ns)["status"].get("conditions", [])),
             timeout=30, what="Exhausted condition")
    time.sleep(1.1)
    proc = cli(ns, "monitor", "--check-quota", "--check-stale", "--stale-after", "1s", "--alert-to", str(alerts),
               "-o", "json", check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    fired = {(a["check"], a["name"], a["severity"]) for a in json.loads(proc.stdout)}
    assert fired == {("quota", "publish", "critical"), ("stale", "old", "warning")}
    lines = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert {(a["check"], a["name"]) for a in lines} == {("quota", "publish"), ("stale", "old")}
    cli(ns, "monitor", "--check-quota", "--alert-to", str(alerts), check=False)
    assert len(alerts.read_text().splitlines()) == 3  # appended, not rewritten
    report = cli(ns, "report", "-o", "markdown").stdout
    assert "| " + ns + " | publish | publish | 2 |" in report


def test_dashboard_watch_redraws(ns: str, operator) -> None:
    cli(ns, "task", "add", "w1")
    proc = subprocess.Popen([sys.executable, "-m", "agentops_operator.cli", "-n", ns, "dashboard", "--watch",
                             "--interval", "0.3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    out, deadline = "", time.monotonic() + 60
    try:
        while out.count("== Tasks (1) ==") < 2 and time.monotonic() < deadline and proc.poll() is None:
            out += proc.stdout.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert out.count("== Tasks (1) ==") >= 2 and "\x1b[2J" in out and f"namespace {ns}" in out, out[-2000:]


def chromium() -> str:
    exe = shutil.which("chromium")
    if not exe:
        pytest.fail("chromium is missing: `make browser-deps` (make e2e runs it)")
    return exe


def headless(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--enable-logging=stderr", "--v=0", "--window-size=1280,1400", *extra,
                           page.as_uri()], capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or ":ERROR:" in line or "Refused" in line)]


def test_html_dashboard_renders_in_a_headless_browser(ns: str, operator, tmp_path: Path) -> None:
    cli(ns, "init", "--quota", "publish=10/daily", "--no-gate-policy")
    cli(ns, "agent", "add", "dev-1", "--role", "developer", "--heartbeat-timeout", "600")
    heartbeat(ns, "dev-1")
    cli(ns, "task", "add", "h1", "--title", "Render <me> & escape", "--role", "developer")
    cli(ns, "task", "add", "h2", "--title", "Nobody takes me", "--role", "designer")
    phase_is(ns, "h1", "Assigned")
    html = cli(ns, "dashboard", "--format", "html").stdout
    page = tmp_path / "report.html"
    page.write_text(html)
    # The detector catches a console error (so its silence below means something).
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>nosuchfunction();</script></body></html>")
    assert console_errors(headless(broken, "--dump-dom").stderr), "console error detector is blind"

    dom = headless(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == [], console_errors(dom.stderr)
    for text in ("dev-1", "heartbeat", "Render &lt;me&gt; &amp; escape", "Assigned (1)", "Backlog (1)", "publish",
                 "Agents (1)", "Quotas (1)"):
        assert text in dom.stdout, text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    proc = headless(page, f"--screenshot={shot}")
    assert proc.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    assert console_errors(proc.stderr) == []
