"""Operator settings from flags or AGENTOPS_* environment variables."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field


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
    # Where HTTP analysis and Prometheus queries may go besides Services of the Agent's namespace
    # (analysis.UrlPolicy): host globs, Prometheus base URLs, and networks exempt from the refused
    # ranges (loopback, link-local, ...; the API server stays refused).
    analysis_allowed_hosts: list[str] = field(default_factory=list)
    prometheus_endpoints: list[str] = field(default_factory=list)
    analysis_allowed_networks: list[str] = field(default_factory=list)

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        p = argparse.ArgumentParser(prog="agentops-operator", description="Run the agentops kopf operator.")
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
            "--resync-seconds", type=float, default=float(os.environ.get("AGENTOPS_RESYNC_SECONDS", "30")),
            help="period of the full re-list that catches anything a watch missed",
        )
        p.add_argument(
            "--operator-namespace", default=os.environ.get("AGENTOPS_OPERATOR_NAMESPACE", "agentops-system")
        )
        p.add_argument("--history-limit", type=int, default=int(os.environ.get("AGENTOPS_HISTORY_LIMIT", "50")))
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
            resync_seconds=a.resync_seconds,
            operator_namespace=a.operator_namespace,
            history_limit=a.history_limit,
            analysis_allowed_hosts=a.analysis_allow_host or _env_list("AGENTOPS_ANALYSIS_ALLOW_HOSTS"),
            prometheus_endpoints=a.prometheus_endpoint or _env_list("AGENTOPS_PROMETHEUS_ENDPOINTS"),
            analysis_allowed_networks=networks,
        )


# Set once at start-up; handlers read it.
current = Settings()
