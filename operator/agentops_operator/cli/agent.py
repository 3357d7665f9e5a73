"""`kubectl agentops agent ...` (rollout verbs are added with the Agent rollout work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("agent", help="inspect and drive Agent rollouts")
    asub = p.add_subparsers(dest="verb", required=True)
    s = asub.add_parser("status", help="show an Agent's rollout status")
    s.add_argument("name")
    s.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    from .. import kube
    from .common import fail, namespace

    obj = kube.get_custom("agents", namespace(args), args.name)
    if obj is None:
        return fail(f"agent {args.name} not found")
    st = obj.get("status") or {}
    print(f"{args.name}: phase={st.get('phase')} ready={st.get('readyReplicas', 0)}/{obj['spec'].get('replicas')}")
    for c in st.get("conditions", []):
        print(f"  {c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}")
    return 0
