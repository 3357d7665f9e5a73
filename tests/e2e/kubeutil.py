"""Small helpers the e2e tests share: kubectl, polling, the operator process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def kubectl(*args: str, as_user: str | None = None, as_groups: tuple[str, ...] = (), check: bool = True,
            input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = ["kubectl", *args]
    if as_user:
        cmd.append(f"--as={as_user}")
        cmd.extend(f"--as-group={g}" for g in as_groups)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def kget(kind: str, name: str, ns: str) -> dict[str, Any]:
    return json.loads(kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def apply(manifest: str, ns: str | None = None, as_user: str | None = None,
          check: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["apply", "-f", "-"]
    if ns:
        args += ["-n", ns]
    return kubectl(*args, input=manifest, as_user=as_user, check=check)


def wait_for(fn: Callable[[], T | None], timeout: float = 60, interval: float = 0.5, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}: last={last!r}")


def private_namespace(prefix: str) -> Iterator[str]:
    """A restricted namespace outside the session prefix (the session's operator does not watch it),
    deleted afterwards unless KEEP_NAMESPACES=1. For fixtures: `yield from private_namespace("x")`."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=20, interval=0.2, what="default ServiceAccount")
    yield name
    if os.environ.get("KEEP_NAMESPACES") != "1":
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """The operator as users run it (`python -m agentops_operator`), against the test cluster."""

    def __init__(self, log_path: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.log_path = log_path
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.health_port = 0
        self.metrics_port = 0

    def start(self) -> None:
        self.health_port = free_port()
        self.metrics_port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentops_operator", "--health-port", str(self.health_port),
             "--metrics-port", str(self.metrics_port), "--resync-seconds", "10", "--verbose", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        url = f"http://127.0.0.1:{self.health_port}/healthz"

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(healthy, timeout=60, what="operator /healthz")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Crash-stop, as a node failure or OOM kill would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
