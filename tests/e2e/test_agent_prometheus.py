"""The Prometheus analysis provider against a real Prometheus (Debian's package, `make e2e-deps`)
scraping a metrics endpoint this test controls."""

from __future__ import annotations

import json
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .agentutil import analysis, create_agent, get_agent, patch_spec, prometheus_binary, serve, wait_agent
from .kubeutil import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kwok]
ERROR_RATIO = {"value": 0.01}


def _metrics() -> tuple[int, str, str]:
    body = ("# TYPE agent_error_ratio gauge\n"
            f'agent_error_ratio{{agent="coder"}} {ERROR_RATIO["value"]}\n')
    return 200, "text/plain; version=0.0.4", body


def _query(address: str, q: str) -> list[float]:
    url = f"{address}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            data = json.load(resp)
    except OSError:
        return []  # not listening yet
    return [float(s["value"][1]) for s in data["data"]["result"]]


@pytest.fixture(scope="module")
def prometheus() -> Iterator[str]:
    binary = prometheus_binary()
    if binary is None:
        pytest.skip("prometheus is not installed: run `make e2e-deps` (Debian package `prometheus`)")
    with serve({"/metrics": _metrics}) as metrics_port, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = Path(tmp) / "prometheus.yml"
        cfg.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "agent", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }))
        log = (Path(tmp) / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        address = f"http://127.0.0.1:{port}"
        try:
            def up() -> list[float]:
                assert proc.poll() is None, (Path(tmp) / "prometheus.log").read_text()[-2000:]
                return _query(address, "agent_error_ratio")

            wait_for(up, timeout=60, what="prometheus scraping")
            yield address
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_canary_prometheus_analysis_passes_then_fails(ns: str, operator, prometheus: str) -> None:
    metric = {"name": "errors", "count": 2, "intervalSeconds": 1,
              "successCondition": "result[0] < 0.05", "failureCondition": "result[0] >= 0.2",
              "prometheus": {"address": prometheus, "query": 'max(agent_error_ratio{agent="{{agent}}"})'}}
    strategy = {"type": "canary", "progressDeadlineSeconds": 30,
                "canary": {"steps": [{"setWeight": 50}, {"analysis": analysis(metric)}]}}
    ERROR_RATIO["value"] = 0.01
    first = create_agent(ns, "coder", strategy)
    v1 = first["status"]["stableRevision"]

    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:fast"})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Healthy"
                   and a["status"].get("stableRevision") != v1, what="prometheus analysis passes")
    m = a["status"]["lastAnalysis"]["metrics"][0]
    assert a["status"]["lastAnalysis"]["phase"] == "Successful" and m["successful"] == 2
    assert m["measurements"][-1]["value"] == "[0.01]"
    v2 = a["status"]["stableRevision"]

    ERROR_RATIO["value"] = 0.5
    wait_for(lambda: _query(prometheus, "agent_error_ratio") == [0.5], timeout=30, what="scrape of 0.5")
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:flaky"})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Degraded", what="prometheus analysis fails")
    assert a["status"]["reason"] == "AnalysisFailed" and a["status"]["stableRevision"] == v2
    assert "failureCondition" in a["status"]["lastAnalysis"]["metrics"][0]["measurements"][-1]["message"]

    # In between the two conditions: inconclusive, which pauses for a human.
    ERROR_RATIO["value"] = 0.1
    wait_for(lambda: _query(prometheus, "agent_error_ratio") == [0.1], timeout=30, what="scrape of 0.1")
    patch_spec(ns, "coder", {"image": "registry.example/agents/coder:meh"})
    a = wait_agent(ns, "coder", lambda a: a["status"].get("phase") == "Paused", what="inconclusive pauses")
    assert a["status"]["reason"] == "AnalysisInconclusive"
    assert get_agent(ns, "coder")["status"]["stableRevision"] == v2
