"""`kubectl agentops task ...`: request moves, approve, reject, retry, cancel, inspect.

Moves are requests: the CLI sets spec.requestedPhase with `by` = the caller as the API server
knows them, and the operator records the phase once the move's gates pass.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from .. import GROUP, VERSION, kube
from ..lifecycle import Phase, transition_key
from .common import api_error, current_user, fail, namespace

PLURAL = "agenttasks"


def register(sub: Any) -> None:
    p = sub.add_parser("task", help="move, approve and inspect AgentTasks")
    t = p.add_subparsers(dest="verb", required=True)
    m = t.add_parser("move", help="request the next phase")
    m.add_argument("name")
    m.add_argument("phase", choices=[x.value for x in Phase])
    m.add_argument("--output", help="deliverable reference (needed for Review)")
    m.add_argument("--notes")
    m.add_argument("--deploy-version")
    m.add_argument("--deploy-image")
    m.set_defaults(func=_move)
    for verb, decision in (("approve", "Approved"), ("reject", "Rejected")):
        a = t.add_parser(verb, help=f"{verb} the task's pending move (as yourself)")
        a.add_argument("name")
        a.add_argument("--reason", default="", required=decision == "Rejected")
        a.add_argument("--transition", default=transition_key(Phase.REVIEW, Phase.DONE))
        a.add_argument("--group", action="append", default=[], help="a group of yours that entitles you")
        a.set_defaults(func=_approve, decision=decision)
    r = t.add_parser("retry", help="retry the failed gates of the requested move")
    r.add_argument("name")
    r.set_defaults(func=_retry)
    c = t.add_parser("cancel", help="cancel the task")
    c.add_argument("name")
    c.set_defaults(func=lambda a: _move(argparse.Namespace(**{**vars(a), "phase": "Cancelled", "output": None,
                                                               "notes": None, "deploy_version": None,
                                                               "deploy_image": None})))
    h = t.add_parser("history", help="the audit trail of a task")
    h.add_argument("name")
    h.add_argument("-o", "--output-format", choices=["table", "json"], default="table")
    h.set_defaults(func=_history)


def _update(args: argparse.Namespace, mutate: Callable[[dict[str, Any]], None], done: str) -> int:
    """Read-modify-write with the resourceVersion precondition; retried on conflict. Prints `done`."""
    ns = namespace(args)
    for _ in range(10):
        obj = kube.get_custom(PLURAL, ns, args.name)
        if obj is None:
            return fail(f"agenttask {args.name} not found in {ns}")
        mutate(obj)
        try:
            kube.custom().replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, args.name, obj)
            print(f"agenttask/{args.name}: {done}")
            return 0
        except ApiException as exc:
            if exc.status == 409:
                time.sleep(0.1)
                continue
            return api_error(exc)
    return fail("gave up after repeated conflicts")


def _move(args: argparse.Namespace) -> int:
    user = current_user()

    def mutate(obj: dict[str, Any]) -> None:
        spec = obj["spec"]
        spec["requestedPhase"] = args.phase
        spec["by"] = user
        if args.output:
            spec["output"] = args.output
        if args.notes:
            spec["notes"] = args.notes
        if args.deploy_version or args.deploy_image:
            deploy = spec.setdefault("deploy", {})
            if args.deploy_version:
                deploy["version"] = args.deploy_version
            if args.deploy_image:
                deploy["image"] = args.deploy_image

    return _update(args, mutate, f"requested {args.phase} as {user}")


def _approve(args: argparse.Namespace) -> int:
    user = current_user()

    def mutate(obj: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"id": f"{int(time.time())}-{secrets.token_hex(4)}", "approver": user,
                                 "decision": args.decision, "reason": args.reason, "transition": args.transition}
        if args.group:
            entry["groups"] = list(args.group)
        obj["spec"].setdefault("approvals", []).append(entry)

    return _update(args, mutate, f"{args.decision.lower()} {args.transition} as {user}")


def _retry(args: argparse.Namespace) -> int:
    user = current_user()

    def mutate(obj: dict[str, Any]) -> None:
        obj["spec"]["retry"] = int(obj["spec"].get("retry", 0)) + 1
        obj["spec"]["by"] = user

    return _update(args, mutate, f"retry requested as {user}")


def _history(args: argparse.Namespace) -> int:
    obj = kube.get_custom(PLURAL, namespace(args), args.name)
    if obj is None:
        return fail(f"agenttask {args.name} not found")
    history = (obj.get("status") or {}).get("history") or []
    if args.output_format == "json":
        print(json.dumps(history, indent=2))
        return 0
    for h in history:
        gates = ", ".join(f"{g['name']}={g['state']}" for g in h.get("gates") or []) or "-"
        print(f"{h['at']}  {h['from']:>10} -> {h['to']:<10} by {h.get('by', '-'):<24} gates: {gates}")
    return 0
