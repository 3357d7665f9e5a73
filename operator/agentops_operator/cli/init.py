"""`kubectl agentops init`: prepare a namespace for a team, idempotently.

    kubectl agentops -n team-a init --editor alice --approver bob --viewer carol \\
        --agent dev-1 --agent qa-1 --quota publish=100/daily --quota tokens=200000/1h

creates (or leaves as they are) RoleBindings to the shipped ClusterRoles (agentops-editor,
-approver, -viewer for people; agentops-agent for the ServiceAccount `agent-<name>` of each agent),
a namespace gate policy ConfigMap (`agentops-gates`, labelled agentops.dev/gate-policy=true; the
default policy unless --gate-policy FILE), and Quotas. Every object is printed as created or
unchanged; nothing that exists is overwritten (re-running is safe).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import TypeAdapter, ValidationError

from .. import API_VERSION, GROUP, VERSION, kube, names
from ..models.task import TransitionGates
from ..quotawindow import parse_window
from ..taskflow import DEFAULT_POLICY
from .common import CLIError, namespace

POLICY_NAME = "agentops-gates"
MANAGED = {"app.kubernetes.io/managed-by": "kubectl-agentops"}
ROLES = {"editor": "agentops-editor", "approver": "agentops-approver", "viewer": "agentops-viewer",
         "agent": "agentops-agent"}


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="prepare a namespace for a team (role bindings, gate policy, quotas)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--editor", action="append", default=[], metavar="USER", help="may create and move tasks")
    p.add_argument("--approver", action="append", default=[], metavar="USER", help="may approve moves")
    p.add_argument("--viewer", action="append", default=[], metavar="USER", help="may read")
    p.add_argument("--agent", action="append", default=[], metavar="AGENT",
                   help="bind agentops-agent to the ServiceAccount agent-AGENT")
    p.add_argument("--quota", action="append", default=[], metavar="NAME=LIMIT[/WINDOW]",
                   help="a Quota for resource NAME, e.g. publish=100/daily or tokens=5000/1h")
    p.add_argument("--gate-policy", metavar="FILE", help="YAML list of {transition, gates} (default: the "
                   "built-in policy, written out so it can be edited)")
    p.add_argument("--no-gate-policy", action="store_true", help="do not create the gate policy ConfigMap")
    p.add_argument("--create-namespace", action="store_true", help="create the namespace if it does not exist")
    p.set_defaults(func=run)


def rolebinding_name(role: str, subject: str) -> str:
    """Deterministic, DNS-safe, unique per (ClusterRole, subject) even for user names like a@b.c."""
    slug = re.sub(r"[^a-z0-9-]+", "-", subject.lower()).strip("-")[:30].strip("-")
    return f"{role}-{slug}-{names.short_hash(role, subject, length=5)}"


def parse_quota(text: str) -> dict[str, Any]:
    m = re.fullmatch(r"([a-z0-9.-]{1,63})=(\d+)(?:/(.+))?", text)
    if not m:
        raise CLIError(f"--quota {text!r}: expected NAME=LIMIT[/WINDOW], e.g. publish=100/daily")
    spec: dict[str, Any] = {"resource": m.group(1), "limit": int(m.group(2))}
    if m.group(3):
        try:
            parse_window(m.group(3))
        except ValueError as exc:
            raise CLIError(f"--quota {text!r}: {exc}") from exc
        spec["window"] = m.group(3)
    return spec


def default_policy_yaml() -> str:
    return yaml.safe_dump([{"transition": key, "gates": [g.wire() for g in gates]}
                           for key, gates in DEFAULT_POLICY.items()], sort_keys=False)


def load_policy(path: str) -> str:
    text = Path(path).read_text()
    try:
        TypeAdapter(list[TransitionGates]).validate_python(yaml.safe_load(text) or [])
    except yaml.YAMLError as exc:
        raise CLIError(f"--gate-policy {path}: not YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CLIError(f"--gate-policy {path}: [{']['.join(str(p) for p in first['loc'])}]: {first['msg']}") from exc
    return text


def plan(ns: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The objects `init` wants, as manifests (pure: no API calls)."""
    objs: list[dict[str, Any]] = []
    subjects: list[tuple[str, dict[str, Any]]] = []
    for kind in ("editor", "approver", "viewer"):
        for user in getattr(args, kind):
            subjects.append((ROLES[kind], {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}))
    for agent in args.agent:
        subjects.append((ROLES["agent"], {"kind": "ServiceAccount", "name": names.agent_service_account(agent),
                                          "namespace": ns}))
    for role, subject in subjects:
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": rolebinding_name(role, subject["name"]), "namespace": ns, "labels": MANAGED},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                     "subjects": [subject]})
    if not args.no_gate_policy:
        text = load_policy(args.gate_policy) if args.gate_policy else default_policy_yaml()
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": POLICY_NAME, "namespace": ns,
                                  "labels": {**MANAGED, "agentops.dev/gate-policy": "true"}},
                     "data": {"policy.yaml": text}})
    for q in args.quota:
        spec = parse_quota(q)
        objs.append({"apiVersion": API_VERSION, "kind": "Quota",
                     "metadata": {"name": spec["resource"], "namespace": ns, "labels": MANAGED}, "spec": spec})
    return objs


def _create(obj: dict[str, Any]) -> str:
    ns = obj["metadata"]["namespace"]
    kind = obj["kind"]
    try:
        if kind == "RoleBinding":
            client.RbacAuthorizationV1Api(kube.api_client()).create_namespaced_role_binding(ns, obj)
        elif kind == "ConfigMap":
            kube.core().create_namespaced_config_map(ns, obj)
        else:
            kube.custom().create_namespaced_custom_object(GROUP, VERSION, ns, "quotas", obj)
    except ApiException as exc:
        if exc.status == 409:
            return "unchanged (exists)"
        raise
    return "created"


def run(args: argparse.Namespace) -> int:
    ns = namespace(args)
    objs = plan(ns, args)  # validates every flag before anything is written
    if args.create_namespace:
        try:
            kube.core().create_namespace({"metadata": {"name": ns, "labels": MANAGED}})
            print(f"namespace/{ns} created")
        except ApiException as exc:
            if exc.status != 409:
                raise
            print(f"namespace/{ns} unchanged (exists)")
    for obj in objs:
        extra = ""
        if obj["kind"] == "RoleBinding":
            s = obj["subjects"][0]
            extra = f" ({obj['roleRef']['name']} for {s['kind']} {s['name']})"
        elif obj["kind"] == "Quota":
            extra = f" ({obj['spec']['limit']} per {obj['spec'].get('window', 'daily')})"
        kind = obj["kind"].lower()
        print(f"{kind}/{obj['metadata']['name']} {_create(obj)}{extra}")
    if not objs:
        print(f"namespace {ns}: nothing to do (give --editor, --approver, --agent, --quota ...)")
    return 0
