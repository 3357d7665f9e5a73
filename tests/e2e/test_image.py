"""The operator image (make image) run as the Helm chart deploys it, against the test cluster.

The container gets exactly the chart's pod: its image, securityContext (uid, read-only root, no
capabilities, no privilege escalation, seccomp RuntimeDefault), env (POD_ID and the namespace from the
downward API), args and the /tmp emptyDir, all read from `helm template`. Only the cluster connection
(host network, a read-only kubeconfig instead of a service account) and the scope (one namespace, free
ports) are the test's. podman runs it; the Makefile installs podman and builds the image first.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .kubeutil import ROOT, free_port, kget, kubectl, private_namespace, wait_for
from .taskutil import EDITOR, blocked, cli, make_team, phase_is, task

STORAGE_CONF = ROOT / "hack" / "containers-storage.conf"
CHART = ROOT / "helm" / "agentops"
SECCOMP_DEFAULT = Path("/usr/share/containers/seccomp.json")
# Not the chart's business (a pod gets its node runtime's limits): podman would raise the container's
# open-file and process limits above this host's hard limits, which a sandboxed host refuses.
_NOFILE = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
LIMITS = ["--ulimit", f"nofile={_NOFILE}:{_NOFILE}", "--ulimit", "nproc=4096:4096"]


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "CONTAINERS_STORAGE_CONF": _storage_conf()})
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@functools.cache
def _storage_conf() -> str:
    out = subprocess.run(["bash", "-c", f"source {ROOT}/hack/image-env.sh && echo $CONTAINERS_STORAGE_CONF"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def render_chart(release: str, namespace: str) -> list[dict[str, Any]]:
    """`helm template` with default values (only the admission policy and user roles left out)."""
    helm = shutil.which("helm") or str(ROOT / ".cluster" / "bin" / "helm")
    out = subprocess.run([helm, "template", release, str(CHART), "--namespace", namespace,
                          "--set", "admissionPolicies.enabled=false,userRoles.enabled=false"],
                         capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    return dict(deploy["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def chart_pod() -> dict[str, Any]:
    """The operator Deployment's pod spec as `helm template` renders it with default values."""
    return pod_spec(render_chart("r", "agentops-system"))


@pytest.fixture(scope="module")
def image(chart_pod: dict[str, Any]) -> str:
    if not shutil.which("podman") or not shutil.which("buildah"):
        pytest.skip("no container runtime: podman/buildah are not installed and `make image-deps` could not "
                    "install them on this machine")
    ref = str(chart_pod["containers"][0]["image"])
    if podman("image", "exists", ref, check=False).returncode != 0:
        # `make test` builds it first; a direct pytest run builds it here (warm: seconds).
        subprocess.run([str(ROOT / "hack" / "image-build.sh")], check=True, timeout=1800)
    return ref


def security_flags(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """podman flags for the chart's pod and container securityContext; anything unmapped fails."""
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    assert psc.get("runAsNonRoot") is True and uid and uid != 0, psc
    flags = ["--user", f"{uid}:{gid}"]
    known = {"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile", "allowPrivilegeEscalation",
             "readOnlyRootFilesystem", "capabilities"}
    assert set(psc) | set(csc) <= known, f"unmapped securityContext fields: {set(psc) | set(csc) - known}"
    seccomp = csc.get("seccompProfile", psc.get("seccompProfile"))
    assert seccomp == {"type": "RuntimeDefault"}, seccomp
    flags += ["--security-opt", f"seccomp={SECCOMP_DEFAULT}"]  # the runtime's default profile
    if csc.get("readOnlyRootFilesystem"):
        flags += ["--read-only", "--read-only-tmpfs=false"]  # no writable /tmp unless a volume says so
    if csc.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    for cap in csc.get("capabilities", {}).get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in csc.get("capabilities", {}).get("add", []):
        flags += ["--cap-add", cap]
    return flags


def volume_flags(pod: dict[str, Any], container: dict[str, Any], scratch: Path) -> list[str]:
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    flags: list[str] = []
    for m in container.get("volumeMounts", []):
        vol = volumes[m["name"]]
        assert set(vol) == {"name", "emptyDir"}, f"unmapped volume {vol}"
        host = scratch / m["name"]
        host.mkdir()
        host.chmod(0o777)  # an emptyDir is world-writable
        flags += ["-v", f"{host}:{m['mountPath']}:rw"]
    return flags


def env_flags(container: dict[str, Any], pod_name: str, namespace: str) -> list[str]:
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    flags: list[str] = []
    for e in container.get("env", []):
        # KeyError: a source this test does not map
        value = e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        flags += ["-e", f"{e['name']}={value}"]
    return flags


def kubeconfig_for_container(directory: Path, user_token: str | None = None) -> Path:
    """The test cluster's kubeconfig, self-contained (embedded certs), readable by the container's uid."""
    cfg = yaml.safe_load(kubectl("config", "view", "--raw", "--flatten", "--minify").stdout)
    if user_token:
        cfg["users"][0]["user"] = {"token": user_token}
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o644)
    return path


class Container:
    def __init__(self, image: str, pod: dict[str, Any], namespace: str, extra_args: list[str],
                 kubeconfig: Path | None, scratch: Path) -> None:
        (container,) = pod["containers"]
        self.name = f"ao-{uuid.uuid4().hex[:8]}"
        self.pod_name = f"agentops-{uuid.uuid4().hex[:5]}"
        self.health_port = free_port()
        args = [*container.get("args", []), f"--health-port={self.health_port}", f"--metrics-port={free_port()}",
                *extra_args]
        mounts = ["-v", f"{kubeconfig}:/etc/agentops/kubeconfig:ro", "-e", "KUBECONFIG=/etc/agentops/kubeconfig"] \
            if kubeconfig else []
        self.cmd = ["run", "--name", self.name, "--network", "host", "--pull", "never", *LIMITS,
                    *security_flags(pod, container), *volume_flags(pod, container, scratch),
                    *env_flags(container, self.pod_name, namespace), *mounts, image, *args]

    def start(self) -> None:
        podman(*self.cmd[:1], "-d", *self.cmd[1:])

    def run(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return podman(*self.cmd[:1], "--rm", *self.cmd[1:], check=False, timeout=timeout)

    def logs(self) -> str:
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def healthz(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as resp:
                return json.loads(resp.read() or b"{}") if resp.status == 200 else None
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        out = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return out == "true"

    def remove(self) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False)


@pytest.fixture
def image_ns() -> Iterator[str]:
    # Not the session prefix: the session's operator (if any) must not reconcile what the container does.
    yield from private_namespace("img")


@pytest.fixture
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agentops-img-") as d:
        os.chmod(d, 0o755)
        yield Path(d)


@pytest.mark.kwok  # the gate Job's pod completes through kwok
def test_image_runs_as_the_chart_deploys_it_and_reconciles(image: str, image_ns: str, scratch: Path) -> None:
    ns = make_team(image_ns)
    # The chart's own ServiceAccount and RBAC (ClusterRole + the Lease Role) in this namespace: the
    # container acts with that identity's token, so the chart's RBAC must be enough.
    release = f"img{uuid.uuid4().hex[:6]}"
    docs = render_chart(release, ns)
    rbac = [d for d in docs if d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                                              "RoleBinding"}]
    assert {d["kind"] for d in rbac} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    pod = pod_spec(docs)
    ctr = None
    try:
        kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": rbac}))
        token = kubectl("create", "token", pod["serviceAccountName"], "-n", ns, "--duration=1h").stdout.strip()
        ctr = Container(image, pod, ns, [f"--namespace={ns}"], kubeconfig_for_container(scratch, token), scratch)
        _run_and_reconcile(ctr, ns, lease=f"{release}-agentops")
    finally:
        if ctr:
            ctr.remove()
        for d in rbac:
            if d["kind"].startswith("Cluster"):
                kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--ignore-not-found", check=False)


def _run_and_reconcile(ctr: Container, ns: str, lease: str) -> None:
    try:
        ctr.start()
        wait_for(lambda: ctr.healthz() is not None or (not ctr.running() and ctr.logs() + "EXITED"),
                 timeout=60, what="the container's /healthz")
        assert ctr.running(), ctr.logs()
        # The process really runs confined as the chart says (read from the host, not from the image).
        pid = podman("inspect", "--format", "{{.State.Pid}}", ctr.name).stdout.strip()
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4
        assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"  # 2: filter mode
        # The attack: drop a file where file permissions allow it (/var/tmp is world-writable in the
        # image): the read-only root filesystem refuses. The operator's code is not even writable.
        tamper = podman("exec", ctr.name, "python3", "-c", "open('/var/tmp/payload', 'w').write('x')", check=False)
        assert tamper.returncode != 0 and "Read-only file system" in tamper.stderr, tamper
        tamper = podman("exec", ctr.name, "python3", "-c",
                        "import agentops_operator as m; open(m.__file__, 'a').write('#')", check=False)
        assert tamper.returncode != 0 and "Permission denied" in tamper.stderr, tamper
        podman("exec", ctr.name, "python3", "-c", "open('/tmp/probe', 'w').write('ok')")
        # The chart turns leader election on: the container holds the Lease under its pod name.
        held = wait_for(lambda: kget("lease", lease, ns), timeout=30, what="the Lease")
        assert held["spec"]["holderIdentity"] == ctr.pod_name

        # An Agent reaches Healthy.
        wait_for(lambda: kget("agent", "dev-1", ns).get("status", {}).get("phase") == "Healthy", timeout=90,
                 what="agent dev-1 Healthy")
        # An AgentTask through a gated move: InProgress -> Review runs the default deliverable gate Job.
        task(ns, "t1")
        phase_is(ns, "t1", "Assigned")
        cli(ns, "task", "move", "t1", "InProgress", as_user=EDITOR)
        phase_is(ns, "t1", "InProgress")
        cli(ns, "task", "move", "t1", "Review", as_user=EDITOR)
        assert "spec.output" in blocked(ns, "t1", "MissingInput")["message"]
        cli(ns, "task", "move", "t1", "Review", "--output", "https://git.example/pr/1", as_user=EDITOR)
        t = phase_is(ns, "t1", "Review", timeout=90)
        gate = t["status"]["history"][-1]["gates"][0]
        assert gate["state"] == "Passed"
        job = kget("job", gate["job"], ns)
        assert job["status"].get("succeeded") == 1
        assert ctr.running(), ctr.logs()
    finally:
        logs = ctr.logs()
    assert "Traceback" not in logs, logs[-3000:]


def test_image_entrypoint_version_and_startup_errors(image: str, chart_pod: dict[str, Any], image_ns: str,
                                                     scratch: Path) -> None:
    (container,) = chart_pod["containers"]
    sec = security_flags(chart_pod, container)
    # The entrypoint is the console script; `--version` is the version the image is tagged with.
    out = podman("run", "--rm", "--pull", "never", *LIMITS, *sec, image, "--version").stdout.strip()
    assert out == f"agentops-operator {image.rsplit(':', 1)[1]}"
    out = podman("run", "--rm", "--pull", "never", *LIMITS, "--entrypoint", "kubectl-agentops", *sec, image,
                 "--version").stdout.strip()
    assert out == f"kubectl agentops {image.rsplit(':', 1)[1]}"

    # No kubeconfig and no service account: one clear line, non-zero, no traceback.
    (scratch / "a").mkdir()
    bare = Container(image, chart_pod, image_ns, [], None, scratch / "a")
    proc = bare.run()
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no Kubernetes credentials" in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr

    # Credentials without RBAC: a ServiceAccount nobody bound. One line naming the fix.
    kubectl("create", "serviceaccount", "nobody", "-n", image_ns)
    token = kubectl("create", "token", "nobody", "-n", image_ns, "--duration=10m").stdout.strip()
    (scratch / "b").mkdir()
    norbac = Container(image, chart_pod, image_ns, [f"--namespace={image_ns}"],
                       kubeconfig_for_container(scratch / "b", user_token=token), scratch / "b")
    proc = norbac.run()
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "forbidden (403)" in lines[0] and "rbac" in lines[0].lower(), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr

    # /healthz answers while the replica waits as a standby: another holder has the Lease.
    kubectl("create", "-n", image_ns, "-f", "-", input=json.dumps({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "r-agentops", "namespace": image_ns},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                 "renewTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())},
    }))
    (scratch / "c").mkdir()
    standby = Container(image, chart_pod, image_ns, [f"--namespace={image_ns}", f"--operator-namespace={image_ns}"],
                        kubeconfig_for_container(scratch / "c"), scratch / "c")
    try:
        standby.start()
        assert wait_for(standby.healthz, timeout=60, what="standby /healthz") == {"standby": True}
        assert kget("lease", "r-agentops", image_ns)["spec"]["holderIdentity"] == "someone-else"
    finally:
        standby.remove()
