"""`kubectl agentops quota ...`: set a budget, take units from it atomically, check it.

`use` and `check` exit 0 when the units are (or would be) granted and 1 when they are refused, so
scripts can gate on them: `kubectl agentops quota use api-calls --amount 3 && call-the-api`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from kubernetes.client.rest import ApiException

from .. import API_VERSION, GROUP, VERSION, kube, quota_client
from ..conditions import get_condition
from ..quota_client import Grant
from ..quotawindow import parse_window
from ..timeutil import format_time
from .common import api_error, fail, namespace

PLURAL = "quotas"
# Every write of `quota set` is recorded under this name in metadata.managedFields.
FIELD_MANAGER = "kubectl-agentops"


def register(sub: Any) -> None:
    p = sub.add_parser("quota", help="windowed budgets (set, use, check)")
    q = p.add_subparsers(dest="verb", required=True)
    s = q.add_parser("set", help="create a Quota or change its limit, window, resource or enforcement")
    s.add_argument("name")
    s.add_argument("--limit", type=int, required=True, help="units per window")
    s.add_argument("--window", help="hourly, daily, weekly, monthly or a rolling duration such as 1h (default daily)")
    s.add_argument("--resource", help="resource key (default on create: the quota's name)")
    s.add_argument("--time-zone", help="IANA time zone of calendar windows (default UTC)")
    s.add_argument("--enforcement", choices=["Hard", "Soft"])
    s.add_argument("--warning-percent", type=int)
    s.add_argument("--force", action="store_true",
                   help="write even when another field manager (e.g. GitOps) owns spec fields of the Quota")
    s.set_defaults(func=_set)
    u = q.add_parser("use", help="take N units atomically; exit 0 if granted, 1 if refused")
    u.add_argument("name")
    u.add_argument("--amount", type=int, default=1)
    u.add_argument("--by", default="", help="who is using it (recorded if the call rolls the window over)")
    u.add_argument("-o", "--output", choices=["text", "json"], default="text")
    u.set_defaults(func=_use)
    c = q.add_parser("check", help="show usage; exit 0 if --amount (default 1) would be granted now, else 1")
    c.add_argument("name")
    c.add_argument("--amount", type=int, default=1)
    c.add_argument("-o", "--output", choices=["text", "json"], default="text")
    c.set_defaults(func=_check)


def spec_owners(obj: dict[str, Any]) -> dict[str, list[str]]:
    """Field managers other than ours that own spec fields (metadata.managedFields), with those fields."""
    owners: dict[str, list[str]] = {}
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        manager = entry.get("manager") or "unknown"
        if manager == FIELD_MANAGER or entry.get("subresource"):
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        fields = sorted(key.removeprefix("f:") for key in spec if key.startswith("f:"))
        if fields:
            owners.setdefault(manager, [])
            owners[manager] += [f for f in fields if f not in owners[manager]]
    return owners


def _owners_text(owners: dict[str, list[str]]) -> str:
    return "; ".join(f"{m} ({', '.join('spec.' + f for f in fields)})" for m, fields in sorted(owners.items()))


def _set(args: argparse.Namespace) -> int:
    if args.limit < 0:
        return fail("--limit must be at least 0")
    if args.window:
        try:
            parse_window(args.window)
        except ValueError as exc:
            return fail(str(exc))
    ns = namespace(args)
    fields = {
        "limit": args.limit,
        "window": args.window,
        "resource": args.resource,
        "timeZone": args.time_zone,
        "enforcement": args.enforcement,
        "warningPercent": args.warning_percent,
    }
    spec = {k: v for k, v in fields.items() if v is not None}
    note = ""
    try:
        current = kube.get_custom(PLURAL, ns, args.name)
        if current is None:
            spec.setdefault("resource", args.name)
            body = {"apiVersion": API_VERSION, "kind": "Quota", "metadata": {"name": args.name}, "spec": spec}
            kube.custom().create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body,
                                                          field_manager=FIELD_MANAGER)
            verb = "created"
        else:
            # GitOps (or anyone applying a manifest) owns the spec it applied: do not change it behind
            # their back, where the next sync would silently undo it.
            owners = spec_owners(current)
            if owners and not args.force:
                return fail(f"quota/{args.name}: spec is managed by {_owners_text(owners)}; change it at its "
                            "source, or pass --force to write it anyway")
            if owners:
                note = f" (over spec fields managed by {_owners_text(owners)})"
            # A merge patch of the named fields only: nothing else of the spec is overwritten. The
            # resourceVersion makes it fail if the object (and so its owners) changed since it was read.
            patch = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "spec": spec}
            kube.custom().patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, args.name, patch,
                                                         field_manager=FIELD_MANAGER)
            verb = "updated"
    except ApiException as exc:
        return api_error(exc)
    print(f"quota/{args.name} {verb}{note}: " + ", ".join(f"{k}={v}" for k, v in spec.items()))
    return 0


def _grant_json(g: Grant) -> dict[str, Any]:
    return {
        "granted": g.granted,
        "overLimit": g.over_limit,
        "used": g.used,
        "reserved": g.reserved,
        "limit": g.limit,
        "remaining": g.remaining,
        "resetAt": format_time(g.reset_at) if g.reset_at else None,
        "message": g.message,
        "conflicts": g.conflicts,
    }


def _use(args: argparse.Namespace) -> int:
    if args.amount < 1:
        return fail("--amount must be at least 1")
    ns = namespace(args)
    try:
        g = quota_client.consume(kube.custom(), ns, args.name, args.amount, by=args.by)
    except ApiException as exc:
        return fail(f"quota {args.name} not found in {ns}") if exc.status == 404 else api_error(exc)
    except quota_client.QuotaContention as exc:
        return fail(str(exc))
    if args.output == "json":
        print(json.dumps(_grant_json(g)))
    elif g.granted:
        print(f"quota/{args.name}: {g.message}")
    else:
        return fail(f"quota/{args.name} refused: {g.message}")
    return 0 if g.granted else 1


def _check(args: argparse.Namespace) -> int:
    if args.amount < 1:
        return fail("--amount must be at least 1")
    ns = namespace(args)
    try:
        g = quota_client.check(kube.custom(), ns, args.name, args.amount)
        obj = kube.get_custom(PLURAL, ns, args.name)
    except ApiException as exc:
        return fail(f"quota {args.name} not found in {ns}") if exc.status == 404 else api_error(exc)
    status = (obj or {}).get("status") or {}
    spec = (obj or {}).get("spec") or {}
    if args.output == "json":
        print(json.dumps({**_grant_json(g), "spec": spec, "status": status}))
        return 0 if g.granted else 1
    print(f"quota/{args.name}  {spec.get('resource')}  {spec.get('enforcement', 'Hard')}  "
          f"window {spec.get('window', 'daily')} ({spec.get('timeZone', 'UTC')})")
    print(f"  used {g.used} + reserved {g.reserved} of {g.limit}, remaining {g.remaining}; "
          f"resets at {status.get('resetAt', '-')}")
    for type_ in ("Exhausted", "Warning", "Ready"):
        cond = get_condition(status.get("conditions"), type_)
        if cond:
            print(f"  {type_}={cond['status']} {cond.get('reason', '')}: {cond.get('message', '')}")
    for r in status.get("reservations") or []:
        print(f"  reserved {r['amount']} by {r['holder']} at {r['at']}: {r.get('reason', '')}")
    verdict = "would be granted" if g.granted else "would be refused"
    print(f"  {args.amount} more {verdict}" + ("" if g.granted else f": {g.message}"))
    return 0 if g.granted else 1
