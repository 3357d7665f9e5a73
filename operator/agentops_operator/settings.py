"""Operator settings from flags or AGENTOPS_* environment variables."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _env_list(name: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


@dataclass
class Settings:
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    log_format: str = "plain"
    verbose: bool = False
    health_port: int = 8080
    metrics_port: int = 9090
    resync_seconds: float = 30.0
    operator_namespace: str = "agentops-system"
    global_config_map: str = "agentops-global-config"
    history_limit: int = 50
    job_ttl_seconds: int = 3600
    workers: int = 4
    api_server_url: str = ""  # the API server the client talks to (set at start-up; analysis never reaches it)
    # Leader election on a coordination.k8s.io Lease (leader.py); off for local runs and tests.
    leader_elect: bool = False
    leader_elect_lease_name: str = "agentops-operator"
    leader_elect_namespace: str = ""  # empty: operator_namespace
    identity: str = ""  # empty: POD_ID, else host-pid (leader.default_identity)
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0
    # Where HTTP analysis and Prometheus queries may go besides Services of the Agent's namespace
    # (analysis.UrlPolicy): host globs, Prometheus base URLs, and networks exempt from the refused
    # ranges (loopback, link-local, ...; the API server stays refused).
    analysis_allowed_hosts: list[str] = field(default_factory=list)
    prometheus_endpoints: list[str] = field(default_factory=list)
    analysis_allowed_networks: list[str] = field(default_factory=list)
    # Alertmanager webhook receiver (handlers/alertreceiver.py): its own port (0: off) and bearer token file.
    alert_receiver_port: int = 0
    alert_receiver_token_file: str = ""
    # Per-Agent label on the per-Agent gauges (metrics.py); False aggregates them per namespace.
    metrics_agent_label: bool = True

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        from . import __version__

        p = argparse.ArgumentParser(prog="agentops-operator", description="Run the agentops kopf operator.")
        p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
        p.add_argument(
            "--namespace", action="append", default=None,
            help="namespace to watch (repeatable; env AGENTOPS_NAMESPACES=a,b); default: all",
        )
        p.add_argument(
            "--log-format", choices=["json", "plain"], default=os.environ.get("AGENTOPS_LOG_FORMAT", "plain")
        )
        p.add_argument("--verbose", action="store_true", default=os.environ.get("AGENTOPS_VERBOSE") == "1")
        p.add_argument("--health-port", type=int, default=int(os.environ.get("AGENTOPS_HEALTH_PORT", "8080")))
        p.add_argument("--metrics-port", type=int, default=int(os.environ.get("AGENTOPS_METRICS_PORT", "9090")))
        p.add_argument(
            "--metrics-agent-label", type=_bool, nargs="?", const=True,
            default=_bool(os.environ.get("AGENTOPS_METRICS_AGENT_LABEL", "true")),
            help="keep the agent label on per-Agent gauges (namespace x agent series); false aggregates them "
                 "per namespace (env AGENTOPS_METRICS_AGENT_LABEL)",
        )
        p.add_argument(
            "--resync-seconds", type=float, default=float(os.environ.get("AGENTOPS_RESYNC_SECONDS", "30")),
            help="period of the full re-list that catches anything a watch missed",
        )
        p.add_argument(
            "--operator-namespace", default=os.environ.get("AGENTOPS_OPERATOR_NAMESPACE", "agentops-system")
        )
        p.add_argument("--history-limit", type=int, default=int(os.environ.get("AGENTOPS_HISTORY_LIMIT", "50")))
        p.add_argument("--workers", type=int, default=int(os.environ.get("AGENTOPS_WORKERS", "4")),
                       help="reconcile worker threads (keys are never worked on twice at once)")
        le = p.add_argument_group("leader election (a coordination.k8s.io/v1 Lease; one active replica)")
        le.add_argument(
            "--leader-elect", action=argparse.BooleanOptionalAction,
            default=os.environ.get("AGENTOPS_LEADER_ELECT", "") in ("1", "true"),
            help="wait for the Lease before reconciling (env AGENTOPS_LEADER_ELECT=1); default off",
        )
        le.add_argument("--leader-elect-lease-name", default=os.environ.get("AGENTOPS_LEADER_ELECT_LEASE_NAME",
                                                                            "agentops-operator"))
        le.add_argument("--leader-elect-namespace", default=os.environ.get("AGENTOPS_LEADER_ELECT_NAMESPACE", ""),
                        help="namespace of the Lease; default: --operator-namespace")
        le.add_argument("--identity", default=os.environ.get("POD_ID", ""),
                        help="this replica's name in the Lease and kopf (env POD_ID); default: host-pid")
        le.add_argument("--leader-elect-lease-duration", type=float, default=10.0,
                        help="seconds a standby waits on an unrenewed Lease before taking it")
        le.add_argument("--leader-elect-renew-deadline", type=float, default=7.0,
                        help="seconds the leader keeps trying to renew before it exits")
        le.add_argument("--leader-elect-retry-period", type=float, default=2.0)
        p.add_argument(
            "--analysis-allow-host", action="append", default=None, metavar="GLOB",
            help="host (glob, e.g. *.monitoring.svc) HTTP analysis and Prometheus queries may reach besides "
                 "Services of the Agent's namespace (repeatable; env AGENTOPS_ANALYSIS_ALLOW_HOSTS=a,b)",
        )
        p.add_argument(
            "--prometheus-endpoint", action="append", default=None, metavar="URL",
            help="Prometheus base URL Agents may query (repeatable; env AGENTOPS_PROMETHEUS_ENDPOINTS=a,b)",
        )
        p.add_argument(
            "--analysis-allow-network", action="append", default=None, metavar="CIDR",
            help="network exempt from the refused address ranges (loopback, link-local, ...), e.g. "
                 "127.0.0.1/32 for tests; the API server is never allowed (repeatable; env "
                 "AGENTOPS_ANALYSIS_ALLOW_NETWORKS=a,b)",
        )
        p.add_argument(
            "--alert-receiver-port", type=int, default=int(os.environ.get("AGENTOPS_ALERT_RECEIVER_PORT", "0")),
            help="port of the Alertmanager webhook receiver (POST /alerts); 0: off (env AGENTOPS_ALERT_RECEIVER_PORT)",
        )
        p.add_argument(
            "--alert-receiver-token-file", default=os.environ.get("AGENTOPS_ALERT_RECEIVER_TOKEN_FILE", ""),
            metavar="PATH",
            help="file holding the bearer token Alertmanager sends (read on every request); without it the "
                 "receiver refuses everything (env AGENTOPS_ALERT_RECEIVER_TOKEN_FILE)",
        )
        a = p.parse_args(argv)
        networks = a.analysis_allow_network or _env_list("AGENTOPS_ANALYSIS_ALLOW_NETWORKS")
        for net in networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                p.error(f"--analysis-allow-network {net!r}: {exc}")
        return cls(
            namespaces=a.namespace or _env_list("AGENTOPS_NAMESPACES"),
            log_format=a.log_format,
            verbose=a.verbose,
            health_port=a.health_port,
            metrics_port=a.metrics_port,
            metrics_agent_label=a.metrics_agent_label,
            resync_seconds=a.resync_seconds,
            operator_namespace=a.operator_namespace,
            history_limit=a.history_limit,
            workers=max(1, a.workers),
            leader_elect=a.leader_elect,
            leader_elect_lease_name=a.leader_elect_lease_name,
            leader_elect_namespace=a.leader_elect_namespace,
            identity=a.identity,
            lease_duration=a.leader_elect_lease_duration,
            renew_deadline=a.leader_elect_renew_deadline,
            retry_period=a.leader_elect_retry_period,
            analysis_allowed_hosts=a.analysis_allow_host or _env_list("AGENTOPS_ANALYSIS_ALLOW_HOSTS"),
            prometheus_endpoints=a.prometheus_endpoint or _env_list("AGENTOPS_PROMETHEUS_ENDPOINTS"),
            analysis_allowed_networks=networks,
            alert_receiver_port=a.alert_receiver_port,
            alert_receiver_token_file=a.alert_receiver_token_file,
        )


# Set once at start-up; handlers read it.
current = Settings()
