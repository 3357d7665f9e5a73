"""`python -m agentops_operator` / `agentops-operator`: run the operator against the current kubeconfig.

Start-up, in order: settings; a pre-flight check that says in one line what is missing (credentials,
API server, CRDs, RBAC) and exits non-zero; with --leader-elect, wait as a standby (``/healthz``
answers) until this replica holds the Lease; then kopf runs until SIGTERM, and the Lease is released.
"""

from __future__ import annotations

import http.server
import logging
import sys
import threading
from typing import Any

import kopf
import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import GROUP, VERSION
from . import settings as settings_mod
from .leader import LeaseConfig, LeaseElector, default_identity
from .settings import Settings

PROG = "agentops-operator"


class StartupError(Exception):
    """A start-up problem the user must fix; printed as one line, no traceback."""


def _api() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise StartupError(
                "no Kubernetes credentials: not in a pod with a service account, and no usable kubeconfig "
                f"(KUBECONFIG or ~/.kube/config): {exc}"
            ) from None
    return client.ApiClient()


def _explain(exc: ApiException, what: str) -> str:
    if exc.status == 401:
        return f"the API server rejected the credentials (401) while {what}"
    if exc.status == 403:
        return (f"forbidden (403) while {what}: grant the operator its RBAC (manifests/operator/rbac.yaml or "
                f"the Helm chart): {(exc.body or exc.reason or '').strip()[:300]}")
    if exc.status == 404:
        return f"not found (404) while {what}: install the CRDs first (kubectl apply --server-side -f crds/)"
    return f"API error {exc.status} {exc.reason} while {what}"


def preflight(api: client.ApiClient, cfg: Settings) -> None:
    """One read the operator cannot run without: list AgentTasks where it will watch them."""
    custom = client.CustomObjectsApi(api)
    plain = [n for n in cfg.namespaces if not any(c in n for c in "*?[!")]
    where = "in all namespaces" if not plain or len(plain) != len(cfg.namespaces) else f"in namespace {plain[0]}"
    host = api.configuration.host
    try:
        if where.startswith("in namespace"):
            custom.list_namespaced_custom_object(GROUP, VERSION, plain[0], "agenttasks", limit=1,
                                                 _request_timeout=(5, 10))
        else:
            custom.list_cluster_custom_object(GROUP, VERSION, "agenttasks", limit=1, _request_timeout=(5, 10))
    except ApiException as exc:
        raise StartupError(_explain(exc, f"listing agenttasks.{GROUP} {where} at {host}")) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise StartupError(f"cannot reach the API server at {host}: {reason}") from None


class _StandbyHealth:
    """/healthz while waiting for the Lease (kopf's own endpoint starts with kopf)."""

    def __init__(self, port: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = self.path.split("?")[0] == "/healthz"
                body = b'{"standby": true}' if ok else b"not found"
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "application/json" if ok else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="standby-health", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _elect(api: client.ApiClient, cfg: Settings, identity: str) -> LeaseElector:
    lease = LeaseConfig(
        name=cfg.leader_elect_lease_name,
        namespace=cfg.leader_elect_namespace or cfg.operator_namespace,
        identity=identity,
        lease_duration=cfg.lease_duration,
        renew_deadline=cfg.renew_deadline,
        retry_period=cfg.retry_period,
    )
    elector = LeaseElector(lease, api)
    health = _StandbyHealth(cfg.health_port)
    try:
        elector.acquire()
    except ApiException as exc:
        raise StartupError(_explain(exc, f"taking the Lease {lease.namespace}/{lease.name}")) from None
    finally:
        health.stop()
    return elector


def main(argv: list[str] | None = None) -> int:
    cfg = Settings.from_args(argv)
    settings_mod.current = cfg
    fmt = kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=cfg.verbose, log_format=fmt)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not cfg.verbose:
        # kopf logs "Handler ... succeeded" at INFO for every watch event; the handlers here only feed
        # the cache, so at 10,000 objects that is most of the log and a good part of the CPU.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # kopf would ask getpwuid() for a name when POD_ID is unset: a uid with no passwd entry crashes it.
    identity = cfg.identity or default_identity()
    elector: LeaseElector | None = None
    pool_log = logging.getLogger("urllib3.connectionpool")
    pool_level = pool_log.level
    try:
        api = _api()
        pool_log.setLevel(logging.ERROR)  # its retry warnings would repeat the one line below
        try:
            preflight(api, cfg)
        finally:
            pool_log.setLevel(pool_level)
        # Registering handlers starts nothing; done before the wait so a standby takes over faster.
        from . import handlers  # noqa: F401
        if cfg.leader_elect:
            elector = _elect(api, cfg, identity)
    except StartupError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        kopf.run(
            standalone=True,  # no kopf peering: one active replica is the Lease's job (leader.py)
            identity=identity,  # type: ignore[arg-type]  # kopf.Identity is a NewType of str
            clusterwide=not cfg.namespaces,
            namespaces=cfg.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz",
        )
    finally:
        if elector:
            elector.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
