"""Alerts that act: the Alertmanager webhook (version 4) payload and what each alert asks the operator to do.

Pure: no I/O. ``handlers/alertreceiver.py`` authenticates the request, bounds its size, calls
``parse_payload`` and ``decide``, and carries the actions out.

An alert acts only when its labels say so:

* ``agentops_action: rollback`` with ``namespace`` and ``agenttask``: move that task to RolledBack;
* ``agentops_action: abort`` with ``namespace`` and ``agent``: abort that Agent's rollout.

Resolved alerts and alerts without ``agentops_action`` are skipped. Each action carries a key made
of the alert's fingerprint (its label set) and its ``startsAt`` (the episode): Alertmanager repeats a
firing alert every ``repeat_interval`` with both unchanged, so a repeat is a duplicate, while the
same alert firing again later (a new episode) acts again.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

ACTION_LABEL = "agentops_action"
TASK_LABEL = "agenttask"
AGENT_LABEL = "agent"
NAMESPACE_LABEL = "namespace"
MAX_BODY_BYTES = 256 * 1024  # Alertmanager's default max_alerts is unlimited; a group this large is not ours
MAX_ALERTS = 500
MAX_REASON = 512
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")

Labels = dict[str, str]


class Action(StrEnum):
    ROLLBACK = "rollback"
    ABORT = "abort"


class _Model(BaseModel):
    # Alertmanager may add fields in later versions: unknown ones are ignored, known ones validated.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class WebhookAlert(_Model):
    status: Literal["firing", "resolved"]
    labels: Labels = Field(default_factory=dict, max_length=64)
    annotations: Labels = Field(default_factory=dict, max_length=64)
    starts_at: AwareDatetime = Field(alias="startsAt")
    ends_at: AwareDatetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{1,32}$")


class WebhookPayload(_Model):
    """Alertmanager's webhook body (``version: "4"``)."""

    version: Literal["4"]
    group_key: str = Field(default="", alias="groupKey", max_length=8192)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(default="", max_length=1024)
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    alerts: tuple[WebhookAlert, ...] = Field(max_length=MAX_ALERTS)


class PayloadError(ValueError):
    """The body is not an Alertmanager v4 webhook payload; the message names the field."""


def parse_payload(body: bytes) -> WebhookPayload:
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError(f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise PayloadError(f"{where}: {first.get('msg')}") from None


@dataclass(frozen=True)
class Decision:
    """One alert's outcome: an action to carry out (``action`` set) or why it was skipped."""

    alertname: str
    fingerprint: str
    action: Action | None = None
    namespace: str = ""
    target: str = ""  # the AgentTask (rollback) or Agent (abort)
    key: str = ""  # idempotency key: one per alert episode
    reason: str = ""  # what the history / Event records
    skipped: str = ""  # why nothing is done (resolved, no action label, bad label)


def alert_key(alert: WebhookAlert) -> str:
    """``alertmanager/<fingerprint>/<startsAt in unix seconds>``: stable across repeats of one episode."""
    return f"alertmanager/{alert.fingerprint}/{int(alert.starts_at.timestamp())}"


def alert_reason(alert: WebhookAlert) -> str:
    name = alert.labels.get("alertname", "alert")
    summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    text = f"{name}: {summary}" if summary else name
    return text[:MAX_REASON]


def decide_one(alert: WebhookAlert) -> Decision:
    name = alert.labels.get("alertname", "")
    base = Decision(alertname=name, fingerprint=alert.fingerprint)
    raw = alert.labels.get(ACTION_LABEL)
    if alert.status != "firing":
        return _skip(base, "resolved")
    if not raw:
        return _skip(base, f"no {ACTION_LABEL} label")
    try:
        action = Action(raw)
    except ValueError:
        return _skip(base, f"{ACTION_LABEL}={raw!r} is not one of rollback, abort")
    ns = alert.labels.get(NAMESPACE_LABEL, "")
    if not _DNS_LABEL.match(ns):
        return _skip(base, f"label {NAMESPACE_LABEL}={ns!r} is not a namespace name")
    target_label = TASK_LABEL if action is Action.ROLLBACK else AGENT_LABEL
    target = alert.labels.get(target_label, "")
    if not _DNS_SUBDOMAIN.match(target):
        return _skip(base, f"{ACTION_LABEL}={action.value} needs label {target_label} (an object name), got {target!r}")
    return Decision(alertname=name, fingerprint=alert.fingerprint, action=action, namespace=ns, target=target,
                    key=alert_key(alert), reason=alert_reason(alert))


def decide(payload: WebhookPayload) -> list[Decision]:
    """One decision per alert, in payload order; two alerts with one key act once."""
    seen: set[str] = set()
    out: list[Decision] = []
    for alert in payload.alerts:
        d = decide_one(alert)
        if d.action is not None:
            if d.key in seen:
                d = _skip(d, "repeated in this payload")
            seen.add(d.key)
        out.append(d)
    return out


def _skip(d: Decision, why: str) -> Decision:
    return Decision(alertname=d.alertname, fingerprint=d.fingerprint, skipped=why)


def bearer_ok(header: str | None, token: bytes) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time; an empty configured token refuses all."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token)

