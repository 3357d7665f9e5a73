"""The CLI's pure parts: parsing, init's plan, stages, completion, the HTML page, error handling."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from agentops_operator import __version__
from agentops_operator.cli import build_parser, completion, dashboard, init, main
from agentops_operator.cli.common import CLIError
from agentops_operator.cli.task import stages_from_flags

ROOT = Path(__file__).resolve().parents[2]


def test_every_original_command_parses() -> None:
    p = build_parser()
    for argv in (["init", "--editor", "alice", "--agent", "dev-1", "--quota", "publish=3/daily"],
                 ["agent", "add", "dev-1", "--role", "developer"], ["agent", "list", "-A"],
                 ["agent", "remove", "dev-1"], ["task", "add", "t1", "--stage", "dev=developer"],
                 ["task", "list", "--phase", "Review"], ["task", "move", "t1", "InProgress"], ["task", "cancel", "t1"],
                 ["task", "history", "t1"], ["task", "rollback", "t1"], ["task", "approve", "t1", "--move"],
                 ["quota", "set", "q", "--limit", "3"], ["quota", "use", "q"], ["quota", "check", "q"],
                 ["dashboard", "--format", "html"], ["dashboard", "--watch"], ["monitor", "--check-stale"],
                 ["report", "-o", "markdown"], ["completion", "bash"]):
        assert callable(p.parse_args(argv).func), argv


def test_namespace_flag_after_the_subcommand() -> None:
    from agentops_operator.cli import _hoist_namespace

    args = build_parser().parse_args(_hoist_namespace(["dashboard", "-n", "team-a", "--format", "html"]))
    assert args.namespace == "team-a" and args.format == "html" and not args.all_namespaces


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and __version__ in capsys.readouterr().out


def test_missing_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    proc = subprocess.run([sys.executable, "-m", "agentops_operator.cli", "-n", "x", "task", "list"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no usable kubeconfig"), proc.stderr
    assert "Traceback" not in proc.stderr


def _init_args(**kw: object) -> argparse.Namespace:
    base = {"editor": [], "approver": [], "viewer": [], "agent": [], "quota": [], "gate_policy": None,
            "no_gate_policy": False}
    return argparse.Namespace(**{**base, **kw})


def test_init_plan() -> None:
    objs = init.plan("team", _init_args(editor=["alice@example.com"], approver=["bob"], agent=["dev-1"],
                                        quota=["publish=100/daily", "tokens=500/1h"]))
    kinds = [o["kind"] for o in objs]
    assert kinds == ["RoleBinding", "RoleBinding", "RoleBinding", "ConfigMap", "Quota", "Quota"]
    agent_rb = objs[2]
    assert agent_rb["roleRef"]["name"] == "agentops-agent"
    assert agent_rb["subjects"] == [{"kind": "ServiceAccount", "name": "agent-dev-1", "namespace": "team"}]
    names = [o["metadata"]["name"] for o in objs if o["kind"] == "RoleBinding"]
    assert len(set(names)) == 3 and all(len(n) <= 63 and n == n.lower() for n in names)
    assert init.rolebinding_name("agentops-editor", "alice") == init.rolebinding_name("agentops-editor", "alice")
    policy = yaml.safe_load(objs[3]["data"]["policy.yaml"])
    assert {p["transition"] for p in policy} == {"InProgress->Review", "Review->Done", "Done->Deployed"}
    assert objs[3]["metadata"]["labels"]["agentops.dev/gate-policy"] == "true"
    assert objs[5]["spec"] == {"resource": "tokens", "limit": 500, "window": "1h"}


def test_init_refuses_bad_flags_before_writing(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="NAME=LIMIT"):
        init.plan("team", _init_args(quota=["publish"]))
    with pytest.raises(CLIError, match="fortnightly"):
        init.plan("team", _init_args(quota=["publish=3/fortnightly"]))
    bad = tmp_path / "policy.yaml"
    bad.write_text("- transition: Review->Nowhere\n  gates: []\n")
    with pytest.raises(CLIError, match=r"--gate-policy .*transition"):
        init.plan("team", _init_args(gate_policy=str(bad)))


def test_pipeline_stages_from_flags() -> None:
    three = stages_from_flags(["dev=developer", "qa=qa", "deploy=deployer"])
    assert [s["phases"] for s in three] == [["Assigned", "InProgress", "Rejected"], ["Review"], ["Done", "Deployed"]]
    two = stages_from_flags(["dev=developer", "review=qa"])
    assert two[1]["phases"] == ["Review", "Done", "Deployed"]
    assert stages_from_flags(["x=r:Assigned,InProgress"])[0]["phases"] == ["Assigned", "InProgress"]
    with pytest.raises(CLIError, match="unknown phase Nope"):
        stages_from_flags(["x=r:Nope"])
    with pytest.raises(CLIError, match="NAME=ROLE"):
        stages_from_flags(["x"])


def test_bash_completion_completes_verbs_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "c.sh"
    script.write_text(completion.script(build_parser()))

    def complete(*words: str) -> set[str]:
        line = " ".join(words)
        probe = (f"source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _kubectl_agentops; "
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout
        return set(out.split())

    assert {"add", "approve", "rollback", "history"} <= complete("kubectl-agentops", "task", "''")
    assert complete("kubectl", "agentops", "ta") == {"task"}
    assert "--move" in complete("kubectl-agentops", "task", "approve", "t1", "--m")
    assert {"InProgress", "Review"} <= complete("kubectl-agentops", "task", "move", "t1", "''")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_dashboard_is_self_contained_and_escaped() -> None:
    agent = {"metadata": {"namespace": "n", "name": "dev-1"}, "spec": {"role": "developer"},
             "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "HeartbeatFresh"}]}}
    evil = {"metadata": {"namespace": "n", "name": "t1"}, "spec": {"title": "<script>alert(1)</script>"},
            "status": {"phase": "Review"}}
    quota = {"metadata": {"namespace": "n", "name": "q"}, "spec": {"resource": "publish", "limit": 4},
             "status": {"used": 3}}
    page = dashboard.render_html([agent], [evil], [quota], "namespace n")
    parsed = _Page()
    parsed.feed(page)
    assert parsed.urls == []  # no link, image, script or stylesheet from anywhere
    assert parsed.tags.count("script") == 1  # only the page's own inline filter
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)" in page
    assert "default-src 'none'" in page
    text = " ".join(parsed.text)
    assert "dev-1" in text and "Review (1)" in text and "75%" in text and "heartbeat" in text
