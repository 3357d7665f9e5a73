"""The chart owns the CRDs: `helm upgrade` changes them, `helm uninstall` keeps them (and the objects).

The cluster's CRDs were applied by `make install` (kubectl apply --server-side -f crds/), as a user
of the previous chart (CRDs in its crds/ directory, which Helm installs once and never owns) has
them. The test installs that previous chart, upgrades to this one (refused until the CRDs are
adopted with --take-ownership, as README says), upgrades to a chart whose Quota CRD has one more
printer column, upgrades back, uninstalls, and finally gives the CRDs back to `make install`
exactly as they were (other tests of the session and later sessions use them).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .kubeutil import ROOT, free_port, kget, kubectl
from .test_helm import CHART, helm

CRD_FILES = sorted((ROOT / "crds").glob("*.yaml"))
CRDS = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in CRD_FILES]
QUOTAS = "quotas.agentops.dev"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
               "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component")
HELM_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace", "helm.sh/resource-policy")


def crd(name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "crd", name, "--show-managed-fields", "-o", "json").stdout)


def all_crds() -> dict[str, dict[str, Any]]:
    out = json.loads(kubectl("get", "crd", *CRDS, "--show-managed-fields", "-o", "json").stdout)
    return {c["metadata"]["name"]: c for c in out["items"]}


def columns(name: str) -> list[str]:
    return [c["name"] for c in crd(name)["spec"]["versions"][0]["additionalPrinterColumns"]]


def previous_chart(tmp: Path) -> Path:
    """The chart as it was before the CRDs became templates: the same CRDs in crds/, version 0.0.9."""
    chart = tmp / "previous" / "agentops"
    shutil.copytree(CHART, chart)
    shutil.rmtree(chart / "templates" / "crds")
    (chart / "crds").mkdir()
    for path in CRD_FILES:
        shutil.copy(path, chart / "crds" / path.name)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text((chart / "Chart.yaml").read_text().replace(
        f"version: {meta['version']}", "version: 0.0.9"))
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values.pop("crds")  # the previous chart had no such values
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"].pop("crds")
    (chart / "values.schema.json").write_text(json.dumps(schema))
    for notes in [chart / "templates" / "NOTES.txt"]:
        notes.write_text("previous chart\n")
    return chart


def give_back_to_make_install(owners: dict[str, list[dict[str, Any]]]) -> None:
    """Undo the adoption: crds/ content and labels, and the field ownership from before the test (else
    helm's, or the API server's "before-first-apply", would make a later changed `make install` conflict)."""
    kubectl("label", "crd", *CRDS, *(f"{k}-" for k in HELM_LABELS), check=False)
    kubectl("annotate", "crd", *CRDS, *(f"{k}-" for k in HELM_ANNOTATIONS), check=False)
    kubectl("apply", "--server-side", "--force-conflicts", *(a for p in CRD_FILES for a in ("-f", str(p))))
    for name in CRDS:
        kubectl("patch", "crd", name, "--type", "merge", "-p",
                json.dumps({"metadata": {"managedFields": owners[name]}}))


def chart_with_extra_quota_column(tmp: Path) -> Path:
    """A copy of the chart, version 0.1.1, whose Quota CRD has one more printer column."""
    chart = tmp / "agentops"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text((chart / "Chart.yaml").read_text().replace(
        f"version: {meta['version']}", "version: 0.1.1-upgrade-test"))
    path = chart / "templates" / "crds" / "agentops.dev_quotas.yaml"
    lines = path.read_text().split("\n")
    i = next(n for n, line in enumerate(lines) if line.strip() == "additionalPrinterColumns:")
    indent = lines[i + 1][: len(lines[i + 1]) - len(lines[i + 1].lstrip())]
    lines[i + 1:i + 1] = [f"{indent}- name: Upgraded", f"{indent}  type: string",
                          f"{indent}  jsonPath: .spec.resource", f"{indent}  priority: 1"]
    path.write_text("\n".join(lines))
    return chart


def install_args(ns: str) -> list[str]:
    return ["--namespace", ns, "--set", "admissionPolicies.enabled=false,userRoles.enabled=false",
            "--set", f"watchNamespaces={{{ns}}}", "--timeout", "90s"]


@pytest.mark.kwok  # the operator image is not pulled here: kwok makes its pod Ready
def test_helm_upgrade_updates_crds_and_uninstall_keeps_them(ns: str, tmp_path: Path) -> None:
    release = f"crd-{uuid.uuid4().hex[:6]}"
    live = all_crds()
    before = {name: c["spec"] for name, c in live.items()}
    owners = {name: c["metadata"]["managedFields"] for name, c in live.items()}
    try:
        # The previous chart: its crds/ exist already, so Helm skips them and they stay unowned.
        helm("install", release, str(previous_chart(tmp_path)), *install_args(ns))
        assert not set(HELM_ANNOTATIONS) & set(crd(QUOTAS)["metadata"].get("annotations") or {})
        # Upgrading to CRD templates needs the existing CRDs adopted, once.
        refused = helm("upgrade", release, str(CHART), *install_args(ns), check=False)
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
        helm("upgrade", release, str(CHART), *install_args(ns), "--take-ownership")
        for name, c in all_crds().items():
            assert c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert c["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
            assert c["metadata"]["labels"]["helm.sh/chart"] == "agentops-0.1.0"
            assert c["spec"]["versions"] == before[name]["versions"]
        kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
            "apiVersion": "agentops.dev/v1alpha1", "kind": "Quota", "metadata": {"name": "survivor"},
            "spec": {"resource": "survivor", "limit": 3}}))

        # helm upgrade with a changed CRD changes the live CRD (helm's crds/ directory never would).
        upgraded = chart_with_extra_quota_column(tmp_path)
        helm("upgrade", release, str(upgraded), *install_args(ns))
        assert "Upgraded" in columns(QUOTAS)
        assert crd(QUOTAS)["metadata"]["labels"]["helm.sh/chart"] == "agentops-0.1.1-upgrade-test"
        wide = kubectl("get", QUOTAS, "-n", ns, "-o", "wide").stdout
        assert "UPGRADED" in wide.splitlines()[0] and "survivor" in wide
        # ... and back: a column the chart no longer has goes away.
        helm("upgrade", release, str(CHART), *install_args(ns))
        assert "Upgraded" not in columns(QUOTAS)
        assert crd(QUOTAS)["spec"]["versions"] == before[QUOTAS]["versions"]

        helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s")
        assert helm("status", release, "--namespace", ns, check=False).returncode != 0
        assert kubectl("get", "deployment", f"{release}-agentops", "-n", ns, check=False).returncode != 0
        for c in all_crds().values():  # kept, and with them every object
            assert c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert kget(QUOTAS, "survivor", ns)["spec"]["limit"] == 3
    finally:
        helm("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)
        give_back_to_make_install(owners)
    after = all_crds()
    for path, name in zip(CRD_FILES, CRDS, strict=True):
        live, want = after[name], yaml.safe_load(path.read_text())
        assert live["metadata"]["labels"] == want["metadata"]["labels"]
        assert not set(HELM_ANNOTATIONS) & set(live["metadata"].get("annotations") or {})
        assert [(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]] == \
            [(m["manager"], m["operation"]) for m in owners[name]]
        assert live["spec"]["versions"] == before[name]["versions"]


def _hook_pod(release: str, ns: str) -> dict[str, Any]:
    hooks = [d for d in yaml.safe_load_all(helm("get", "hooks", release, "--namespace", ns).stdout) if d]
    (pod,) = [d for d in hooks if d["kind"] == "Pod"]
    return pod


@pytest.mark.kwok
def test_helm_test_hook_admitted_and_its_check_detects_a_dead_operator(ns: str, operator) -> None:
    """kwok runs no containers, so the hook's check runs here, against the session operator's real
    /healthz; the hook Pod itself must be admitted by the namespace's restricted Pod Security."""
    release = f"ht-{uuid.uuid4().hex[:6]}"
    try:
        helm("install", release, str(CHART), *install_args(ns), "--set", "crds.install=false")
        pod = _hook_pod(release, ns)
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", input=json.dumps(pod))
        python, flag, script, url = pod["spec"]["containers"][0]["command"]
        assert (python, flag) == ("python3", "-c")
        service = kget("service", f"{release}-agentops-metrics", ns)
        port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "health")
        assert url == f"http://{release}-agentops-metrics.{ns}.svc:{port}/healthz"

        ok = subprocess.run([sys.executable, "-c", script, f"http://127.0.0.1:{operator.health_port}/healthz"],
                            capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0 and ": 200 " in ok.stdout, ok.stdout + ok.stderr
        dead = subprocess.run([sys.executable, "-c", script, f"http://127.0.0.1:{free_port()}/healthz"],
                              capture_output=True, text=True, timeout=60)
        assert dead.returncode == 1 and "failed" in dead.stdout, dead.stdout + dead.stderr
    finally:
        helm("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)
