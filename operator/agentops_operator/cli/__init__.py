"""`kubectl agentops`: the kubectl plugin (install the console script `kubectl-agentops` on PATH).

Every command acts through the API server with the caller's own kubeconfig identity, so RBAC and
the admission policies apply to it exactly as to `kubectl`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from . import agent, dashboard, quota, task

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl agentops", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    parser.add_argument("--as", dest="as_user", default=None, help="impersonate this user (as kubectl --as)")
    parser.add_argument("--as-group", dest="as_groups", action="append", default=[], help="impersonate a group")
    sub = parser.add_subparsers(dest="group", required=True)
    for module in (task, quota, agent, dashboard):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.as_user:
        from .. import kube

        kube.impersonate(args.as_user, args.as_groups)
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.parse_args([args.group, "--help"])
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
