"""The command codec: verbs (promote, abort, retry, undo) as annotations on the Agent, and their acks.

The CLI writes ``agentops.dev/<verb>: {"id": ..., "full": true, "toRevision": 3}``; the planner handles
a command once and records ``status.acknowledgedCommands`` (one per verb, keyed by id), so a command
is pending while its id differs from the acknowledged one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .io import Command
from .state import CommandAck, SystemCommand
from .types import Verb

COMMAND_PREFIX = "agentops.dev/"


def command_annotation(verb: Verb) -> str:
    return f"{COMMAND_PREFIX}{verb.value}"


def encode_command(nonce: str, *, full: bool = False, to_revision: int | None = None) -> str:
    body: dict[str, Any] = {"id": nonce}
    if full:
        body["full"] = True
    if to_revision is not None:
        body["toRevision"] = to_revision
    return json.dumps(body, separators=(",", ":"))


def parse_command(verb: Verb, raw: str) -> Command:
    """``{"id": ..., "full": true, "toRevision": 3}`` (what the CLI writes) or a bare id."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("id"):
            to = body.get("toRevision")
            return Command(verb, str(body["id"]), full=bool(body.get("full")),
                           to_revision=int(to) if isinstance(to, int | str) and str(to).isdigit() else None)
    return Command(verb, raw)


def pending_commands(annotations: Mapping[str, str] | None, acks: Sequence[CommandAck],
                     system: Mapping[str, SystemCommand] | None = None) -> list[Command]:
    """Commands whose id the status has not acknowledged yet, in the order the planner handles verbs;
    per verb, pending system commands (not yet ``handledAt``, oldest first) before the annotation's."""
    done = {a.verb: a.id for a in acks}
    out = []
    for verb in (Verb.ABORT, Verb.RETRY, Verb.UNDO, Verb.PROMOTE):
        waiting = sorted(((c.requested_at, cid) for cid, c in (system or {}).items()
                          if c.verb is verb and c.handled_at is None))
        for _, cid in waiting:
            sc = (system or {})[cid]
            out.append(Command(verb, cid, by=sc.by, reason=sc.reason, system=True))
        raw = (annotations or {}).get(command_annotation(verb))
        if not raw or not raw.strip():
            continue
        cmd = parse_command(verb, raw)
        if done.get(verb) != cmd.nonce:
            out.append(cmd)
    return out
