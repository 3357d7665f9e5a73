"""`kubectl agentops agent ...`: register (add), list, remove; rollout status and the verbs promote /
abort / retry / undo.

`agent add NAME --role R` without `--image` registers an *external* agent (a process anywhere that
heartbeats through a Lease, see `agentops_operator.worker`); with `--image` the operator runs it.
Adding an Agent that exists adopts it: the flags given are merged into its spec, nothing else changes.
`agent remove`: the operator hands the Agent's open tasks back to another Ready agent of the role;
when there is none the command refuses (the tasks would be orphaned) unless `--force`.

Verbs are declarative: each sets one annotation on the Agent, ``agentops.dev/<verb>``, to a JSON
command with a fresh id (``{"id": "...", "full": true}``). The operator handles each id once and
records the outcome in ``status.acknowledgedCommands``; this command waits for that record. The
spec is never touched, so GitOps tools see no drift from a verb, and the API server's RBAC on
``patch agents`` decides who may drive rollouts.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from typing import Any

from .. import API_VERSION, GROUP, VERSION
from .common import add_all_namespaces, add_output


def agent_spec_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    spec: dict[str, Any] = {"role": args.role}
    if args.capability:
        spec["capabilities"] = sorted(set(args.capability))
    if args.image:
        spec["image"] = args.image
    if args.max_concurrent is not None:
        spec["maxConcurrentTasks"] = args.max_concurrent
    heartbeat = {k: v for k, v in (("timeoutSeconds", args.heartbeat_timeout),
                                   ("handBackAfterSeconds", args.hand_back_after)) if v is not None}
    if heartbeat:
        spec["heartbeat"] = heartbeat
    if args.description is not None:
        spec["description"] = args.description
    return spec


def _add(args: argparse.Namespace) -> int:
    from kubernetes.client.rest import ApiException

    from .. import kube
    from .common import namespace

    ns = namespace(args)
    spec = agent_spec_from_flags(args)
    body = {"apiVersion": API_VERSION, "kind": "Agent", "metadata": {"name": args.name}, "spec": spec}
    kind = "external" if "image" not in spec else f"image {spec['image']}"
    try:
        kube.custom().create_namespaced_custom_object(GROUP, VERSION, ns, "agents", body)
        print(f"agent/{args.name} created (role {args.role}, {kind})")
        return 0
    except ApiException as exc:
        if exc.status != 409:
            raise
    kube.custom().patch_namespaced_custom_object(GROUP, VERSION, ns, "agents", args.name, {"spec": spec})
    print(f"agent/{args.name} adopted (exists; merged: {', '.join(sorted(spec))})")
    return 0


def agent_rows(agents: list[dict[str, Any]]) -> list[list[str]]:
    from ..conditions import get_condition

    rows = []
    for a in agents:
        st, spec = a.get("status") or {}, a.get("spec") or {}
        ready = get_condition(st.get("conditions"), "Ready")
        rows.append([
            a["metadata"]["namespace"], a["metadata"]["name"], spec.get("role", ""),
            "external" if not spec.get("image") else "pods",
            (ready or {}).get("status", "-") + (f"/{ready.get('reason')}" if ready and ready.get("reason") else ""),
            f"{st.get('activeTasks', 0)}/{spec.get('maxConcurrentTasks', 1)}", str(st.get("tasksCompleted", 0)),
            str(st.get("lastActive") or "-"), ",".join(spec.get("capabilities") or []) or "-",
        ])
    return rows


def _list(args: argparse.Namespace) -> int:
    from .. import kube
    from .common import scope
    from .dashboard import table

    agents = kube.list_custom("agents", scope(args))
    if args.output == "json":
        print(json.dumps(agents, indent=2))
        return 0
    print(table(["NAMESPACE", "NAME", "ROLE", "KIND", "READY", "TASKS", "COMPLETED", "LAST-ACTIVE", "CAPABILITIES"],
                agent_rows(agents)))
    return 0


def _remove(args: argparse.Namespace) -> int:
    """Open tasks of a deleted Agent are handed back by the operator to another Ready agent of the
    stage's role; with nobody to take them, refuse (unless --force) instead of orphaning them."""
    from kubernetes.client.rest import ApiException

    from .. import handback, kube
    from ..conditions import get_condition
    from .common import fail, namespace

    ns = namespace(args)
    me = kube.get_custom("agents", ns, args.name)
    if me is None:
        return fail(f"agent {args.name} not found in {ns}")
    role = (me.get("spec") or {}).get("role")
    held = sorted(t["metadata"]["name"] for t in kube.list_custom("agenttasks", ns)
                  if (t.get("status") or {}).get("assignee") == args.name
                  and (t.get("status") or {}).get("phase") in handback.HOLDING_PHASES)
    others = [a["metadata"]["name"] for a in kube.list_custom("agents", ns)
              if a["metadata"]["name"] != args.name and (a.get("spec") or {}).get("role") == role
              and (get_condition((a.get("status") or {}).get("conditions"), "Ready") or {}).get("status") == "True"]
    if held and not others and not args.force:
        return fail(f"agent {args.name} holds open tasks ({', '.join(held)}) and no other Ready agent with role "
                    f"{role} could take them: add one, finish or cancel the tasks, or --force")
    try:
        kube.custom().delete_namespaced_custom_object(GROUP, VERSION, ns, "agents", args.name)
    except ApiException as exc:
        if exc.status == 404:
            return fail(f"agent {args.name} not found in {ns}")
        raise
    print(f"agent/{args.name} deleted" + (f"; open tasks handed back to the queue: {', '.join(held)}" if held else ""))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("agent", help="inspect and drive Agent rollouts")
    asub = p.add_subparsers(dest="verb", required=True)
    a = asub.add_parser("add", help="register an Agent (external without --image), or adopt an existing one")
    a.add_argument("name")
    a.add_argument("--role", required=True)
    a.add_argument("--capability", action="append", default=[], help="capability tag (repeatable)")
    a.add_argument("--image", help="container image the operator runs; omit for an external agent")
    a.add_argument("--max-concurrent", type=int, help="tasks the agent may hold at once")
    a.add_argument("--heartbeat-timeout", type=int, help="external agents: seconds a heartbeat stays fresh")
    a.add_argument("--hand-back-after", type=int,
                   help="external agents: seconds NotReady before its open tasks are handed back")
    a.add_argument("--description")
    a.set_defaults(func=_add)
    ls = asub.add_parser("list", help="list Agents with readiness, load and completed stages")
    add_all_namespaces(ls)
    add_output(ls, "table", "json")
    ls.set_defaults(func=_list)
    rm = asub.add_parser("remove", help="delete an Agent; its open tasks are handed back (refused when nobody "
                                        "could take them, unless --force)")
    rm.add_argument("name")
    rm.add_argument("--force", action="store_true", help="delete even though it holds open tasks")
    rm.set_defaults(func=_remove)
    s = asub.add_parser("status", help="show an Agent's rollout status")
    s.add_argument("name")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(func=_status)
    for verb, helptext in (
        ("promote", "complete the current step (a pause, an inconclusive analysis) or, with --full, all steps"),
        ("abort", "abort the rollout: the canary / preview goes to zero, the stable revision keeps serving"),
        ("retry", "roll the desired revision out again after an abort or rollback"),
        ("undo", "serve an older revision (default: the one before the stable one)"),
    ):
        v = asub.add_parser(verb, help=helptext, description=helptext)
        v.add_argument("name")
        if verb == "promote":
            v.add_argument("--full", action="store_true", help="skip all remaining steps and analyses")
        if verb == "undo":
            v.add_argument("--to-revision", type=int, default=None, help="revision number (see `agent status`)")
        v.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the operator (0: don't)")
        v.set_defaults(func=_verb, command=verb)


def _verb(args: argparse.Namespace) -> int:
    from kubernetes.client.rest import ApiException

    from .. import kube
    from .. import rollout as ro
    from .common import api_error, fail, namespace

    ns = namespace(args)
    verb = ro.Verb(args.command)
    nonce = f"{int(time.time() * 1000)}-{secrets.token_hex(3)}"
    value = ro.encode_command(nonce, full=bool(getattr(args, "full", False)),
                              to_revision=getattr(args, "to_revision", None))
    try:
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, ns, "agents", args.name,
            {"metadata": {"annotations": {ro.command_annotation(verb): value}}},
        )
    except ApiException as exc:
        if exc.status == 404:
            return fail(f"agent {args.name} not found in {ns}")
        return api_error(exc)
    if args.timeout <= 0:
        print(f"{verb.value} requested for agent {args.name} (id {nonce})")
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        obj = kube.get_custom("agents", ns, args.name)
        if obj is None:
            return fail(f"agent {args.name} disappeared")
        for ack in (obj.get("status") or {}).get("acknowledgedCommands") or []:
            if ack.get("verb") == verb.value and ack.get("id") == nonce:
                print(f"{args.name}: {ack.get('message', '')}")
                return 0 if ack.get("applied") else 1
        time.sleep(0.3)
    return fail(f"the operator has not acknowledged {verb.value} (id {nonce}) within {args.timeout:g}s")


def _status(args: argparse.Namespace) -> int:
    from .. import kube
    from .common import fail, namespace

    ns = namespace(args)
    obj = kube.get_custom("agents", ns, args.name)
    if obj is None:
        return fail(f"agent {args.name} not found")
    st = obj.get("status") or {}
    history = _history(ns, args.name, obj["metadata"]["uid"])
    if args.output == "json":
        json.dump({"status": st, "revisions": history}, sys.stdout, indent=2, default=str)
        print()
        return 0
    spec = obj.get("spec") or {}
    print(f"{args.name}: phase={st.get('phase')} ({st.get('reason', '')}) "
          f"ready={st.get('readyReplicas', 0)}/{st.get('desiredReplicas', spec.get('replicas'))} "
          f"strategy={(spec.get('strategy') or {}).get('type', 'rolling')}")
    if st.get("message"):
        print(f"  {st['message']}")
    numbers = {h["revision"]: h["number"] for h in history}

    def rev(key: str) -> str:
        r = st.get(key)
        return f"{r} (#{numbers[r]})" if r in numbers else str(r)

    print(f"  revisions: desired={rev('desiredRevision')} current={rev('currentRevision')} "
          f"stable={rev('stableRevision')}")
    if st.get("desiredRevision") and st.get("desiredRevision") != st.get("stableRevision") \
            and st.get("phase") in ("Degraded", "Healthy"):
        print("  drift: the spec's revision is not the one served; fix the spec (Git) or `agent retry`")
    if st.get("currentStep"):
        print(f"  step {(st.get('currentStepIndex') or 0) + 1}/{st.get('stepCount')}: {st['currentStep']}"
              + (f", canary weight {st['canaryWeight']}%" if st.get("canaryWeight") is not None else ""))
    for key in ("analysis", "lastAnalysis"):
        run = st.get(key)
        if run:
            print(f"  {key}: {run.get('runId')} {run.get('phase') or ''} {run.get('message', '')}".rstrip())
            for m in run.get("metrics") or []:
                last = (m.get("measurements") or [{}])[-1]
                print(f"    {m['name']}: {m.get('phase') or ''} ok={m.get('successful', 0)} "
                      f"failed={m.get('failed', 0)} inconclusive={m.get('inconclusive', 0)} "
                      f"errors={m.get('errors', 0)}; last: {last.get('phase', '-')} {last.get('message', '')}")
    for c in st.get("conditions", []):
        print(f"  {c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}")
    for ack in st.get("acknowledgedCommands") or []:
        print(f"  {ack['verb']} {ack['id']}: {'applied' if ack.get('applied') else 'ignored'} - {ack.get('message')}")
    if history:
        print("  history: " + ", ".join(f"#{h['number']} {h['revision']}" for h in history))
    if st.get("endpoint"):
        print(f"  endpoint: {st['endpoint']}  selector: {st.get('selector')}")
    return 0


def _history(ns: str, name: str, uid: str) -> list[dict[str, Any]]:
    from kubernetes.client.rest import ApiException

    from .. import kube, names

    try:
        res = kube.apps().list_namespaced_controller_revision(ns, label_selector=names.pod_selector(name))
    except ApiException:
        return []  # may be forbidden for a viewer; status still prints
    out = []
    for cr in res.items:
        if any(r.uid == uid for r in cr.metadata.owner_references or []):
            out.append({"number": int(cr.revision), "revision": (cr.metadata.labels or {}).get(names.LABEL_REVISION)})
    return sorted(out, key=lambda h: h["number"])
