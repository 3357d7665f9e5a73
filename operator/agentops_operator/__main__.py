"""`python -m agentops_operator` / `agentops-operator`: run the operator against the current kubeconfig."""

from __future__ import annotations

import logging
import sys

import kopf

from . import settings as settings_mod
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    cfg = Settings.from_args(argv)
    settings_mod.current = cfg
    fmt = kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=cfg.verbose, log_format=fmt)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    from . import handlers  # noqa: F401  (registers kopf handlers)

    kopf.run(
        standalone=True,  # one replica (Recreate); no peering CRDs needed
        clusterwide=not cfg.namespaces,
        namespaces=cfg.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{cfg.health_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
