"""`kubectl agentops`: the kubectl plugin (install the console script `kubectl-agentops` on PATH).

Every command acts through the API server with the caller's own kubeconfig identity, so RBAC and
the admission policies apply to it exactly as to `kubectl`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .. import __version__
from . import agent, completion, dashboard, init, monitor, quota, report, task

Handler = Callable[[argparse.Namespace], int]
GROUPS = (init, agent, task, quota, dashboard, monitor, report, completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubectl agentops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
    parser.add_argument("--as", dest="as_user", default=None, help="impersonate this user (as kubectl --as)")
    parser.add_argument("--as-group", dest="as_groups", action="append", default=[], help="impersonate a group")
    sub = parser.add_subparsers(dest="group", required=True)
    for module in GROUPS:
        module.register(sub)
    return parser


def _hoist_namespace(argv: list[str]) -> list[str]:
    """`-n NS` / `--namespace NS` / `-A` are accepted after the subcommand too (as kubectl does)."""
    out: list[str] = []
    front: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-n", "--namespace") and i + 1 < len(argv):
            front += [a, argv[i + 1]]
            i += 2
            continue
        if a.startswith("--namespace="):
            front.append(a)
        else:
            out.append(a)
        i += 1
    return front + out


def main(argv: list[str] | None = None) -> int:
    from kubernetes import config
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    from .common import CLIError, api_message, fail

    parser = build_parser()
    args = parser.parse_args(_hoist_namespace(list(sys.argv[1:] if argv is None else argv)))
    handler: Handler | None = getattr(args, "func", None)
    if handler is None:
        parser.parse_args([args.group, "--help"])
        return 2
    try:
        if args.as_user:
            from .. import kube

            kube.impersonate(args.as_user, args.as_groups)
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except CLIError as exc:
        return fail(str(exc))
    except config.ConfigException as exc:
        return fail(f"no usable kubeconfig ({exc}); set KUBECONFIG or run inside a pod with a ServiceAccount")
    except ApiException as exc:
        if exc.status == 403:
            return fail(f"forbidden: {api_message(exc)}")
        if exc.status == 401:
            return fail("unauthorized: the kubeconfig's credentials were refused by the API server")
        return fail(api_message(exc))
    except (HTTPError, ConnectionError) as exc:
        return fail(f"cannot reach the API server: {exc}")
    except OSError as exc:
        return fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
