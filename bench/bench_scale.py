"""Scale benchmark of the core loop: how the operator's cost grows with the number of tasks.

For each size N (env BENCH_SCALE_SIZES, default 100,1000,5000,10000), in a fresh namespace with one
operator watching it:
- creating N tasks (named assignee, 8 client threads): seconds until every one is recorded Assigned,
  as a rate and as a ratio to the raw status-PATCH rate of one plain client measured in the same run;
- idle: API requests the operator sends while nothing changes (its own request counter, and the API
  server's count of requests to agentops.dev resources), per second and per 1,000 objects;
- moves: 100 moves Assigned→InProgress requested one at a time, latency request→recorded p50/p99
  (seen on a watch); 200 moves requested at once, recorded per second;
- writes per recorded transition and reads of tasks per transition (the operator's counters);
- operator RSS; time from an operator restart to every object reconciled.
With BENCH_SCALE_AGENTS (default 1000 at the largest size) extra Agents are added for the last size.
Writes bench/results/scale.json. `run_size` is also used by tests/scale (a bounded CI version).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "scale.json"
GROUP, VERSION = "agentops.dev", "v1alpha1"
WRITE_VERBS = ("POST", "PATCH", "PUT", "DELETE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pgrep(pattern: str) -> int | None:
    out = subprocess.run(["pgrep", "-o", "-f", pattern], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def apiserver_pid() -> int | None:
    """The kube-apiserver this bench talks to (by its port: other local clusters may be running)."""
    port = client.Configuration.get_default_copy().host.rsplit(":", 1)[-1]
    return _pgrep(f"kube-apiserver .*--secure-port={port}( |$)")


def etcd_pid() -> int | None:
    """The etcd behind that API server (by the client port the API server names)."""
    pid = apiserver_pid()
    if pid is None:
        return None
    m = re.search(r"--etcd-servers=\S*:(\d+)", Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
    return _pgrep(f"etcd .*--listen-client-urls=\\S*:{m.group(1)}( |$)") if m else None


def scrape(url: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value}."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def total(metrics: dict[str, float], name: str, **labels: str | tuple[str, ...]) -> float:
    s = 0.0
    for key, value in metrics.items():
        if not key.startswith(name + "{") and key != name:
            continue
        ok = True
        for lk, lv in labels.items():
            m = re.search(rf'{lk}="([^"]*)"', key)
            got = m.group(1) if m else None
            if (isinstance(lv, tuple) and got not in lv) or (isinstance(lv, str) and got != lv):
                ok = False
        if ok:
            s += value
    return s


class Operator:
    def __init__(self, ns: str, log: Path, extra: tuple[str, ...] = ()) -> None:
        self.ns, self.log, self.extra = ns, log, extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0

    def start(self) -> None:
        self.metrics_port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if os.environ.get("BENCH_OPERATOR_SRC"):  # another checkout's operator/ (the "before" figures)
            env["PYTHONPATH"] = os.environ["BENCH_OPERATOR_SRC"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentops_operator", "--namespace", self.ns, "--health-port", str(free_port()),
             "--metrics-port", str(self.metrics_port), *self.extra],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.metrics()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("operator did not start; see " + str(self.log))

    def metrics(self) -> dict[str, float]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PhaseWatch:
    """One watch on a namespace's tasks: when each task was first seen at each phase."""

    def __init__(self, api: client.CustomObjectsApi, ns: str) -> None:
        self.api, self.ns = api, ns
        self.seen: dict[tuple[str, str], float] = {}
        self.cv = threading.Condition()
        self._stop = False
        rv = api.list_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", limit=1)["metadata"][
            "resourceVersion"]
        self.thread = threading.Thread(target=self._run, args=(rv,), daemon=True)
        self.thread.start()

    def _run(self, rv: str) -> None:
        while not self._stop:
            w = watch.Watch()
            try:
                for ev in w.stream(self.api.list_namespaced_custom_object, GROUP, VERSION, self.ns, "agenttasks",
                                   resource_version=rv, timeout_seconds=60, allow_watch_bookmarks=True):
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    phase = (obj.get("status") or {}).get("phase")
                    if phase:
                        with self.cv:
                            self.seen.setdefault((obj["metadata"]["name"], phase), time.monotonic())
                            self.cv.notify_all()
                    if self._stop:
                        return
            except Exception:
                time.sleep(0.2)

    def wait(self, names: list[str], phase: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.cv:
            while not all((n, phase) in self.seen for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if (n, phase) not in self.seen]
                    raise TimeoutError(f"{len(missing)} of {len(names)} tasks never reached {phase}: {missing[:5]}")
                self.cv.wait(left)
            return max(self.seen[(n, phase)] for n in names)

    def stop(self) -> None:
        self._stop = True


def task_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentTask", "metadata": {"name": name},
            "spec": {"title": name, **spec}}


def parallel(fn: Any, items: list[Any], threads: int = 8) -> None:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, items))


def raw_patch_rate(api: client.CustomObjectsApi, core: client.CoreV1Api, threads: int, n: int = 300) -> float:
    """Status PATCHes per second of one plain client on this API server (no operator watching)."""
    ns = f"bench-raw-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    try:
        names = [f"r{i:04d}" for i in range(min(n, 100))]
        parallel(lambda nm: api.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", task_body(nm)),
                 names)
        counter = iter(range(10**9))

        def patch(i: int) -> None:
            api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "agenttasks", names[i % len(names)],
                                                      {"status": {"transitions": next(counter)}})

        t0 = time.monotonic()
        parallel(patch, list(range(n)), threads)
        return n / (time.monotonic() - t0)
    finally:
        core.delete_namespace(ns)
        wait_gone(core, ns)


def burst_floor(api: client.CustomObjectsApi, core: client.CoreV1Api, count: int, by: str) -> float:
    """`count` moves requested at once, recorded by bench/floor_controller.py (watch + one status PATCH
    per move, nothing else) instead of the operator: the ceiling any operator has on this machine."""
    ns = f"bench-floor-{uuid.uuid4().hex[:5]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    proc = None
    try:
        names = [f"f{i:04d}" for i in range(count)]
        parallel(lambda nm: api.create_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", task_body(nm)),
                 names)
        parallel(lambda nm: api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, "agenttasks", nm, {
            "status": {"phase": "Assigned"}}), names)
        pw = PhaseWatch(api, ns)
        proc = subprocess.Popen([sys.executable, str(HERE / "floor_controller.py"), ns], env=dict(os.environ))
        time.sleep(2)  # its watch is open
        t0 = time.monotonic()
        parallel(lambda nm: api.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", nm, {
            "spec": {"requestedPhase": "InProgress", "by": by}}), names)
        done_at = pw.wait(names, "InProgress", timeout=300)
        pw.stop()
        return count / (done_at - t0)
    finally:
        if proc:
            proc.kill()
            proc.wait()
        core.delete_namespace(ns)
        wait_gone(core, ns)


def apiserver_requests(api_client: client.ApiClient) -> dict[tuple[str, str, str, str], float]:
    """The API server's own request counters: (group, resource, subresource, verb) → count. Measured at
    the server, so they count the same way for any operator build (the "before" one has no counters)."""
    text = api_client.call_api("/metrics", "GET", response_type="str", auth_settings=["BearerToken"],
                               _return_http_data_only=True, _preload_content=False).data.decode()
    out: dict[tuple[str, str, str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        key = (labels.get("group", ""), labels.get("resource", ""), labels.get("subresource", ""),
               labels.get("verb", ""))
        out[key] = out.get(key, 0.0) + float(line.rpartition(" ")[2])
    return out


def delta(after: dict[tuple[str, str, str, str], float], before: dict[tuple[str, str, str, str], float],
          group: str | None = None, resource: str | None = None, subresource: str | None = None,
          verbs: tuple[str, ...] | None = None) -> float:
    s = 0.0
    for (g, r, sub, v), value in after.items():
        if (group is None or g == group) and (resource is None or r == resource) and \
                (subresource is None or sub == subresource) and (verbs is None or v in verbs):
            s += value - before.get((g, r, sub, v), 0.0)
    return s


def apiserver_agentops_requests(api_client: client.ApiClient) -> float:
    """Requests the API server has served for agentops.dev resources (any client), WATCH excluded."""
    m = apiserver_requests(api_client)
    return sum(v for (g, _, _, verb), v in m.items() if g == "agentops.dev" and verb != "WATCH")


def settle(op: Operator, api_client: client.ApiClient, quiet_s: float = 3.0, timeout: float = 600) -> None:
    """Wait until nobody has written agentops.dev objects for `quiet_s` seconds (as the API server
    counts it; the bench itself is not writing then)."""
    deadline = time.monotonic() + timeout
    last = -1.0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        m = apiserver_requests(api_client)
        writes = sum(v for (g, _, _, verb), v in m.items() if g == "agentops.dev" and verb in WRITE_VERBS)
        # The operator's own count when it has one (its Events are sent after its status writes).
        writes += total(op.metrics(), "agentops_api_requests_total")
        if writes != last:
            last, quiet_since = writes, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.5)
    raise TimeoutError("the operator never went quiet")


def run_size(n: int, extra_agents: int = 0, idle_seconds: float = 20.0, moves: int = 100, burst: int = 200,
             restart: bool = True, operator_args: tuple[str, ...] = ()) -> dict[str, Any]:
    moves = min(moves, n // 2)
    burst = min(burst, n - moves)
    config.load_kube_config()
    api_client = client.ApiClient()
    api = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    out: dict[str, Any] = {}
    # Before anything of ours runs: the control plane's own background requests, subtracted from idle figures.
    b0, tb0 = apiserver_requests(api_client), time.monotonic()
    time.sleep(min(idle_seconds, 10))
    b1, tb1 = apiserver_requests(api_client), time.monotonic()
    baseline_all = delta(b1, b0, verbs=tuple(v for v in ("GET", "LIST", *WRITE_VERBS))) / (tb1 - tb0)
    # One client's status-PATCH rate is latency-bound (etcd's fsync among it) and varies from minute to
    # minute on a shared machine: three samples here and one right before the burst; the median is the
    # denominator of every ratio below.
    raw_samples = [round(raw_patch_rate(api, core, 1), 1) for _ in range(3)]
    out["raw_status_patch_per_s_1_thread"] = statistics.median(raw_samples)
    out["raw_status_patch_per_s_8_threads"] = round(raw_patch_rate(api, core, 8), 1)
    ns = f"bench-scale-{n}-{uuid.uuid4().hex[:4]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    (ROOT / ".cluster").mkdir(exist_ok=True)
    op = Operator(ns, ROOT / ".cluster" / f"operator-bench-scale-{n}.log", operator_args)
    op.start()
    pw = PhaseWatch(api, ns)
    try:
        per_agent = 1000  # the schema's bound on maxConcurrentTasks
        devs = [f"dev-{k}" for k in range(max(1, -(-n // per_agent)))]
        for dev in devs:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, "agents", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": dev},
                "spec": {"role": "dev", "image": "registry.example/dev:1", "maxConcurrentTasks": per_agent}})
        # Their workloads roll out first (kwok starts the pods): that is change, not idleness, and at
        # 100 tasks it would still be going on in the idle window.
        wait_healthy(api, ns, devs)
        if extra_agents:
            parallel(lambda i: api.create_namespaced_custom_object(GROUP, VERSION, ns, "agents", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "Agent", "metadata": {"name": f"extra-{i:04d}"},
                # Registered agents that run elsewhere (no image: no workload, readiness by heartbeat).
                "spec": {"role": "other"}}),
                list(range(extra_agents)))
        names = [f"t{i:05d}" for i in range(n)]
        t0 = time.monotonic()
        parallel(lambda i: api.create_namespaced_custom_object(
            GROUP, VERSION, ns, "agenttasks", task_body(names[i], assignee=devs[i // per_agent])), list(range(n)))
        created = time.monotonic() - t0
        done_at = pw.wait(names, "Assigned", timeout=max(120, n / 5))
        out["create_s"] = round(created, 2)
        out["create_to_all_assigned_s"] = round(done_at - t0, 2)
        out["assigned_per_s"] = round(n / (done_at - t0), 1)
        out["assigned_rate_vs_raw_patch_1_thread"] = round(out["assigned_per_s"] /
                                                           out["raw_status_patch_per_s_1_thread"], 2)
        settle(op, api_client)
        objects = n + len(devs) + extra_agents
        # Idle: nothing changes; what does the operator still ask of the API server?
        m0, a0, s0, t0 = op.metrics(), apiserver_agentops_requests(api_client), apiserver_requests(api_client), \
            time.monotonic()
        time.sleep(idle_seconds)
        m1, a1, s1, t1 = op.metrics(), apiserver_agentops_requests(api_client), apiserver_requests(api_client), \
            time.monotonic()
        all_idle = delta(s1, s0, verbs=("GET", "LIST", *WRITE_VERBS)) / (t1 - t0)
        out["idle_apiserver_all_requests_per_s_minus_baseline"] = round(max(0.0, all_idle - baseline_all), 3)
        # The two /metrics reads of the API server are ours: subtract nothing (they are not agentops.dev).
        op_req = total(m1, "agentops_api_requests_total") - total(m0, "agentops_api_requests_total")
        out["idle_operator_requests_per_s"] = round(op_req / (t1 - t0), 3)
        # Which requests, if any (verb and resource as the operator counts them).
        out["idle_operator_requests"] = {
            k.removeprefix("agentops_api_requests_total"): v - m0.get(k, 0.0) for k, v in m1.items()
            if k.startswith("agentops_api_requests_total{") and v != m0.get(k, 0.0)}
        out["idle_operator_requests_per_s_per_1000_objects"] = round(op_req / (t1 - t0) / objects * 1000, 4)
        out["idle_apiserver_agentops_requests_per_s"] = round((a1 - a0) / (t1 - t0), 3)
        out["operator_rss_mib"] = rss_mib(op.proc.pid) if op.proc else float("nan")
        # The fourth raw sample, close to the moves (before the request counts below start).
        raw_samples.append(round(raw_patch_rate(api, core, 1), 1))
        out["raw_status_patch_per_s_1_thread_samples"] = raw_samples
        out["raw_status_patch_per_s_1_thread"] = statistics.median(raw_samples)
        out["assigned_rate_vs_raw_patch_1_thread"] = round(out["assigned_per_s"] /
                                                           out["raw_status_patch_per_s_1_thread"], 2)
        # Moves one at a time: latency request → recorded.
        before = op.metrics()
        server_before = apiserver_requests(api_client)
        latencies = []
        from agentops_operator.cli.common import current_user

        by = current_user()  # the admission policy allows only one's own name in spec.by
        for name in names[:moves]:
            t0 = time.monotonic()
            api.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", name,
                                               {"spec": {"requestedPhase": "InProgress", "by": by}})
            latencies.append(pw.wait([name], "InProgress", timeout=120) - t0)
        q = statistics.quantiles(latencies, n=100)
        out["move_latency_p50_ms"] = round(statistics.median(latencies) * 1000, 1)
        out["move_latency_p99_ms"] = round(q[98] * 1000, 1)
        # A burst: `burst` moves requested at once.
        batch = names[moves:moves + burst]
        api_pid = apiserver_pid()
        cpu0 = cpu_s(op.proc.pid) if op.proc else 0.0
        api_cpu0 = cpu_s(api_pid) if api_pid else 0.0
        t0 = time.monotonic()
        parallel(lambda nm: api.patch_namespaced_custom_object(GROUP, VERSION, ns, "agenttasks", nm, {
            "spec": {"requestedPhase": "InProgress", "by": by}}), batch)
        done_at = pw.wait(batch, "InProgress", timeout=300)
        out["burst_moves_recorded_per_s"] = round(len(batch) / (done_at - t0), 1)
        out["burst_rate_vs_raw_patch_1_thread"] = round(out["burst_moves_recorded_per_s"] /
                                                        out["raw_status_patch_per_s_1_thread"], 2)
        settle(op, api_client)
        # Where the burst's time goes on a machine where everything shares the cores: CPU per move of
        # the operator and of the API server, Events included (the burst is CPU-bound here; see README).
        if op.proc:
            out["burst_operator_cpu_ms_per_move"] = round((cpu_s(op.proc.pid) - cpu0) * 1000 / len(batch), 2)
        if api_pid:
            out["burst_apiserver_cpu_ms_per_move"] = round((cpu_s(api_pid) - api_cpu0) * 1000 / len(batch), 2)
        after = op.metrics()
        server_after = apiserver_requests(api_client)
        transitions = float(moves + burst)  # seen recorded on the watch, whatever the operator counts
        status_writes = delta(server_after, server_before, "agentops.dev", "agenttasks", "status", WRITE_VERBS)
        task_reads = delta(server_after, server_before, "agentops.dev", "agenttasks", None, ("GET", "LIST"))
        all_writes = delta(server_after, server_before, None, None, None, WRITE_VERBS) - (moves + burst)
        out["transitions_recorded"] = transitions
        out["status_writes_per_transition"] = round(status_writes / transitions, 3)
        out["event_writes_per_transition"] = round(
            delta(server_after, server_before, "", "events", "", ("POST",)) / transitions, 3)
        out["api_writes_per_transition"] = round(all_writes / transitions, 3)  # the bench's own PATCHes excluded
        out["task_reads_per_transition"] = round(task_reads / transitions, 3)
        # The same burst recorded by the least an operator can do (bench/floor_controller.py).
        out["burst_floor_moves_recorded_per_s"] = round(burst_floor(api, core, len(batch), by), 1)
        out["burst_rate_vs_floor"] = round(out["burst_moves_recorded_per_s"] /
                                           out["burst_floor_moves_recorded_per_s"], 2)
        if total(after, "agentops_task_transitions_total"):
            out["operator_counted_transitions"] = total(after, "agentops_task_transitions_total") - \
                total(before, "agentops_task_transitions_total")
        if restart:
            op.stop(signal.SIGKILL)
            t0 = time.monotonic()
            op.start()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                m = op.metrics()
                if total(m, "agentops_reconcile_total", kind="agenttasks") >= n and \
                        total(m, "agentops_workqueue_depth") == 0:
                    break
                time.sleep(0.2)
            out["restart_to_all_reconciled_s"] = round(time.monotonic() - t0, 2)
            out["operator_rss_mib_after_restart"] = rss_mib(op.proc.pid) if op.proc else float("nan")
            time.sleep(10)  # the start-up garbage (initial LISTs) is returned once the first pass is done
            out["operator_rss_mib_10s_after_restart"] = rss_mib(op.proc.pid) if op.proc else float("nan")
        return out
    finally:
        pw.stop()
        op.stop()
        core.delete_namespace(ns)
        wait_gone(core, ns)


def wait_healthy(api: client.CustomObjectsApi, ns: str, agents: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for name in agents:
        while (api.get_namespaced_custom_object(GROUP, VERSION, ns, "agents", name).get("status") or {}).get(
                "phase") != "Healthy":
            if time.monotonic() > deadline:
                raise TimeoutError(f"Agent {name} never became Healthy")
            time.sleep(0.2)


def wait_gone(core: client.CoreV1Api, ns: str, timeout: float = 600) -> None:
    """Until the namespace is deleted: its teardown (every task, Event and child) loads the API server,
    and the next measurement must not share the machine with it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(ns)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(1)


def main() -> int:
    sizes = [int(s) for s in os.environ.get("BENCH_SCALE_SIZES", "100,1000,5000,10000").split(",") if s]
    agents = int(os.environ.get("BENCH_SCALE_AGENTS", "1000"))
    results: dict[str, dict[str, float]] = {}
    for i, n in enumerate(sizes):
        extra = agents if i == len(sizes) - 1 and n >= 5000 else 0
        print(f"scale bench: {n} tasks{f' + {extra} agents' if extra else ''} ...", flush=True)
        results[str(n)] = run_size(n, extra_agents=extra)
        print(json.dumps(results[str(n)], indent=1), flush=True)
    metrics: dict[str, float] = {}
    for n, figures in results.items():
        for k, v in figures.items():
            metrics[f"{n}_{k}"] = v
    if len(sizes) > 1:
        lo, hi = str(sizes[0]), str(max(s for s in sizes if s <= 5000))
        metrics[f"p99_ratio_{hi}_vs_{lo}"] = round(results[hi]["move_latency_p99_ms"] /
                                                   results[lo]["move_latency_p99_ms"], 2)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"name": "scale", "metrics": metrics, "sizes": results,
                                   "notes": "one run, one machine; ratios are within this run"}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
