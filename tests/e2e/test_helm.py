"""The Helm chart (helm/agentops): lint, render, install and uninstall against the test cluster."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from typing import Any

import pytest
import yaml

from .kubeutil import ROOT, kget, kubectl

CHART = ROOT / "helm" / "agentops"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion); `helm template` renders for it.
MIN_KUBE = "v1.30.0"
RBAC_KINDS = {"ClusterRole", "Role"}
CLUSTER_KINDS = ("clusterroles", "clusterrolebindings", "validatingadmissionpolicies",
                 "validatingadmissionpolicybindings")


@pytest.fixture(autouse=True)
def _clean_helm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # HELM_* settings from a developer's shell (namespace, kube context) must not leak into the tests.
    for key in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_DRIVER"):
        monkeypatch.delenv(key, raising=False)


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("helm") or str(ROOT / ".cluster" / "bin" / "helm")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def render(release: str = "r", namespace: str = "agentops", *flags: str) -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", MIN_KUBE, *flags).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def manifest_docs(*paths: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for p in paths:
        docs += [d for d in yaml.safe_load_all((ROOT / p).read_text()) if d]
    return docs


def test_helm_lint_is_clean() -> None:
    proc = helm("lint", "--strict", str(CHART), "--kube-version", MIN_KUBE)
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_helm_template_restricted_least_privilege_and_mirrors_manifests() -> None:
    docs = render("r")
    deploy = by_kind(docs, "Deployment")["r-agentops"]
    assert deploy["spec"]["replicas"] == 2  # one leader, one standby on the Lease
    assert deploy["spec"]["strategy"] == {"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert not sc.get("privileged") and "add" not in sc["capabilities"]
    assert "--log-format=json" in container["args"]

    # No wildcards anywhere in RBAC.
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    assert rbac
    for role in rbac:
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in v for v in rule.get(key, [])), (role["metadata"]["name"], rule)

    # The operator's ClusterRole is manifests/operator/rbac.yaml's, rule for rule, bound to the chart's SA.
    want = manifest_docs("manifests/operator/rbac.yaml", "manifests/rbac/user-roles.yaml",
                         *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "manifests" / "admission").glob("*.yaml")))
    roles, want_roles = by_kind(docs, "ClusterRole"), by_kind(want, "ClusterRole")
    assert set(roles) == {f"r-{n}" for n in want_roles}
    for name, role in want_roles.items():
        assert roles[f"r-{name}"]["rules"] == role["rules"], name
        for label in ("rbac.authorization.k8s.io/aggregate-to-view", "rbac.authorization.k8s.io/aggregate-to-edit",
                      "rbac.authorization.k8s.io/aggregate-to-admin"):
            assert roles[f"r-{name}"]["metadata"]["labels"].get(label) == role["metadata"]["labels"].get(label)
    assert "approve" in roles["r-agentops-approver"]["rules"][0]["verbs"]
    binding = by_kind(docs, "ClusterRoleBinding")["r-agentops-operator"]
    assert binding["roleRef"]["name"] == "r-agentops-operator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-agentops", "namespace": "agentops"}]
    assert pod["serviceAccountName"] == "r-agentops"

    # The admission policies are the manifests'; only their names (and the roles they suggest) differ.
    want_vaps = by_kind(want, "ValidatingAdmissionPolicy")
    assert set(by_kind(docs, "ValidatingAdmissionPolicy")) == {f"r-{n}" for n in want_vaps}
    for name, want_vap in want_vaps.items():
        vap = by_kind(docs, "ValidatingAdmissionPolicy")[f"r-{name}"]
        spec = json.dumps(vap["spec"]).replace("r-agentops-approver", "agentops-approver")
        assert json.loads(spec.replace("r-agentops-admin", "agentops-admin")) == want_vap["spec"], name
        vapb = by_kind(docs, "ValidatingAdmissionPolicyBinding")[f"r-{name}"]
        assert vapb["spec"] == {**by_kind(want, "ValidatingAdmissionPolicyBinding")[name]["spec"],
                                "policyName": f"r-{name}"}

    # Cluster-scoped names carry the release and never equal a manifests/ name (CRDs excepted: their
    # names are the API's, one set per cluster; see test_chart_crds_are_the_generated_ones).
    fixed = {d["metadata"]["name"] for d in want if "namespace" not in d["metadata"]}
    for d in docs:
        if "namespace" not in d["metadata"] and d["kind"] != "CustomResourceDefinition":
            assert d["metadata"]["name"].startswith("r-") and d["metadata"]["name"] not in fixed, d["metadata"]
            assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == "r"


def test_helm_template_toggles() -> None:
    docs = render("r", "agentops", "--set", "admissionPolicies.enabled=false,userRoles.enabled=false",
                  "--set", "watchNamespaces={team-a,team-b-*}")
    kinds = {d["kind"] for d in docs}
    assert "ValidatingAdmissionPolicy" not in kinds and "ValidatingAdmissionPolicyBinding" not in kinds
    assert set(by_kind(docs, "ClusterRole")) == {"r-agentops-operator"}
    args = by_kind(docs, "Deployment")["r-agentops"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b-*" in args
    assert "Service" in kinds and "ServiceMonitor" not in kinds
    # The ServiceMonitor needs both the flag and the prometheus-operator API.
    asked = render("r", "agentops", "--set", "metrics.serviceMonitor.enabled=true")
    assert "ServiceMonitor" not in {d["kind"] for d in asked}
    docs = render("r", "agentops", "--set", "metrics.serviceMonitor.enabled=true",
                  "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert "ServiceMonitor" in {d["kind"] for d in docs}
    # Two active operators are refused: more than one replica needs leader election.
    proc = helm("template", "r", str(CHART), "--kube-version", MIN_KUBE, "--set",
                "replicas=2,leaderElection.enabled=false", check=False)
    assert proc.returncode != 0 and "leaderElection" in proc.stderr


def test_full_chart_accepted_by_api_server_beside_manifests(ns: str) -> None:
    """Server-side dry run: every object, the CEL policy, the NetworkPolicy and the test hook included,
    is valid and no name collides with the cluster-wide objects `make install` applied from manifests/
    (nor between two releases). The CRDs exist already (make install): they are checked by
    test_chart_crds_are_the_generated_ones and tests/e2e/test_helm_crds.py."""
    for release in (f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"):
        out = helm("template", release, str(CHART), "--namespace", ns, "--kube-version", MIN_KUBE,
                   "--set", "crds.install=false,networkPolicy.enabled=true",
                   "--set", "networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.team=monitoring",
                   "--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}").stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        assert {"NetworkPolicy", "Pod"} <= {d["kind"] for d in docs}
        kubectl("create", "--dry-run=server", "-f", "-", input=out)


def _release_objects(release: str) -> list[str]:
    out = kubectl("get", ",".join(CLUSTER_KINDS), "-l", f"app.kubernetes.io/instance={release}",
                  "-o", "name").stdout
    return out.split()


@pytest.mark.kwok  # the operator image is not pulled here: kwok makes its pod Ready
def test_helm_install_and_uninstall(ns: str) -> None:
    release = f"ao-{uuid.uuid4().hex[:6]}"
    sa = f"system:serviceaccount:{ns}:{release}-agentops"
    try:
        helm("install", release, str(CHART), "--namespace", ns, "--set", "crds.install=false",
             "--set", "admissionPolicies.enabled=false,userRoles.enabled=false",
             "--set", f"watchNamespaces={{{ns}}}")
        # kwok makes the pod Ready; the namespace enforces the restricted Pod Security Standard.
        kubectl("wait", "--for=condition=Available", "--timeout=90s", f"deployment/{release}-agentops", "-n", ns,
                timeout=100)
        deploy = kget("deployment", f"{release}-agentops", ns)
        assert deploy["status"]["availableReplicas"] == 2
        assert sorted(_release_objects(release)) == [
            f"clusterrole.rbac.authorization.k8s.io/{release}-agentops-operator",
            f"clusterrolebinding.rbac.authorization.k8s.io/{release}-agentops-operator",
        ]
        # The binding works, and status-only stays status-only.
        assert kubectl("auth", "can-i", "patch", "agenttasks.agentops.dev", "--subresource=status", "-n", ns,
                       f"--as={sa}").stdout.strip() == "yes"
        assert kubectl("auth", "can-i", "update", "agenttasks.agentops.dev", "-n", ns, f"--as={sa}",
                       check=False).stdout.strip() == "no"
        assert kubectl("get", "service", f"{release}-agentops-metrics", "-n", ns, "-o", "name").stdout.strip()

        helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s")
        assert _release_objects(release) == []
        assert kubectl("get", "deployment", f"{release}-agentops", "-n", ns, check=False).returncode != 0
        assert helm("status", release, "--namespace", ns, check=False).returncode != 0
    finally:
        # Cluster-scoped objects outlive the namespace: never leave them behind.
        helm("uninstall", release, "--namespace", ns, "--ignore-not-found", check=False)


# ---- CRDs, values schema, extension points, helm test, NetworkPolicy ------------------------------------


def test_chart_crds_are_the_generated_ones() -> None:
    """The CRDs the chart renders are crds/ (spec for spec), kept on uninstall by default."""
    files = sorted(f"crds/{p.name}" for p in (ROOT / "crds").glob("*.yaml"))
    want = {d["metadata"]["name"]: d for d in manifest_docs(*files)}
    crds = by_kind(render("r"), "CustomResourceDefinition")
    assert set(crds) == set(want) and len(crds) == 3
    for name, crd in crds.items():
        assert crd["spec"] == want[name]["spec"], name
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        labels = crd["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "agentops" and labels["app.kubernetes.io/instance"] == "r"
    not_kept = by_kind(render("r", "agentops", "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert len(not_kept) == 3 and all("annotations" not in c["metadata"] for c in not_kept.values())
    assert by_kind(render("r", "agentops", "--set", "crds.install=false"), "CustomResourceDefinition") == {}


def test_values_schema_refuses_typos_at_every_level(ns: str) -> None:
    # values.yaml itself validates (helm lint checks it against the schema; see test_helm_lint_is_clean).
    typos = [  # (--set, the key helm must name)
        ("imag.tag=x", "imag"),                                              # top level
        ("image.tga=x", "tga"),                                              # a chart-defined level
        ("securityContext.readOnlyRootFilesytem=false", "readOnlyRootFilesytem"),  # a Kubernetes type, closed
        ("networkPolicy.apiServer.cidr=10.0.0.1/32", "cidr"),                # a nested chart level
        ("crds.kepp=false", "kepp"),
        ("extraVolumeMounts[0].name=x,extraVolumeMounts[0].mountPath=/x,extraVolumeMounts[0].readonly=true",
         "readonly"),                                                        # inside a list item
    ]
    for typo, key in typos:
        proc = helm("template", "r", str(CHART), "--kube-version", MIN_KUBE, "--set", typo, check=False)
        assert proc.returncode != 0, f"--set {typo} was accepted"
        assert f"additional properties '{key}' not allowed" in proc.stderr, proc.stderr
    # install refuses it too, before anything reaches the cluster
    release = f"typo-{uuid.uuid4().hex[:6]}"
    proc = helm("install", release, str(CHART), "--namespace", ns, "--set", "imag.tag=x", check=False)
    assert proc.returncode != 0 and "imag" in proc.stderr, proc.stderr
    assert helm("status", release, "--namespace", ns, check=False).returncode != 0
    # The correct spellings are accepted.
    render("r", "agentops", "--set", "image.tag=x,crds.keep=false,securityContext.readOnlyRootFilesystem=true")


def test_extra_args_env_volumes_render_into_the_operator_pod() -> None:
    docs = render("r", "agentops", "--set-json", 'extraArgs=["--history-limit=20"]',
                  "--set-json", 'extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]',
                  "--set-json", 'extraVolumes=[{"name":"ca","configMap":{"name":"corp-ca"}}]',
                  "--set-json", 'extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ssl/corp","readOnly":true}]')
    pod = by_kind(docs, "Deployment")["r-agentops"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][-1] == "--history-limit=20" and "--log-format=json" in container["args"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True} in container["volumeMounts"]


def test_helm_test_hook_is_restricted_and_targets_the_service() -> None:
    docs = render("r")
    pod = by_kind(docs, "Pod")["r-agentops-test-healthz"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    service = by_kind(docs, "Service")["r-agentops-metrics"]
    health = next(p for p in service["spec"]["ports"] if p["name"] == "health")
    assert container["command"][-1] == f"http://r-agentops-metrics.agentops.svc:{health['port']}/healthz"
    assert health["targetPort"] == "health"
    assert "Pod" not in {d["kind"] for d in render("r", "agentops", "--set", "tests.enabled=false")}
    assert "Pod" not in {d["kind"] for d in render("r", "agentops", "--set", "metrics.service.enabled=false")}


def test_network_policy_is_opt_in_and_narrow() -> None:
    assert "NetworkPolicy" not in {d["kind"] for d in render("r")}
    docs = render("r", "agentops", "--set", "networkPolicy.enabled=true",
                  "--set-json", 'networkPolicy.ingressFrom=[{"namespaceSelector":{"matchLabels":{"team":"mon"}}}]',
                  "--set-json", 'networkPolicy.extraEgress=[{"to":[{"ipBlock":{"cidr":"10.9.0.0/16"}}],'
                                '"ports":[{"port":9090}]}]')
    np = by_kind(docs, "NetworkPolicy")["r-agentops"]["spec"]
    deploy = by_kind(docs, "Deployment")["r-agentops"]
    assert np["podSelector"]["matchLabels"] == deploy["spec"]["selector"]["matchLabels"]
    assert np["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = np["ingress"]
    assert [p["port"] for p in ingress["ports"]] == ["metrics", "health"]
    assert ingress["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "r", "app.kubernetes.io/component": "test"}}},
        {"namespaceSelector": {"matchLabels": {"team": "mon"}}},
    ]
    test_pod = by_kind(docs, "Pod")["r-agentops-test-healthz"]
    for key, value in ingress["from"][0]["podSelector"]["matchLabels"].items():
        assert test_pod["metadata"]["labels"][key] == value  # the helm test pod may reach /healthz
    dns, api, extra = np["egress"]
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                          "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert [p["port"] for p in api["ports"]] == [443, 6443] and "to" not in api
    assert extra == {"to": [{"ipBlock": {"cidr": "10.9.0.0/16"}}], "ports": [{"port": 9090}]}
    pinned = by_kind(render("r", "agentops", "--set", "networkPolicy.enabled=true",
                            "--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}"), "NetworkPolicy")
    assert pinned["r-agentops"]["spec"]["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
