"""The Alertmanager webhook receiver: alerts labelled ``agentops_action`` roll a task back or abort a rollout.

Its own port (``--alert-receiver-port``, 0 = off) and its own credential: a bearer token read from a
file (``--alert-receiver-token-file``; the chart mounts it from a Secret) on every request, so a
rotated Secret takes effect without a restart, compared in constant time. Without a token file every
request is refused. The token is checked before the body is read; the body is bounded
(``alerts.MAX_BODY_BYTES``, by Content-Length) and validated as an Alertmanager v4 payload.

What each alert asks for is decided in ``alerts`` (pure). Carrying it out:

* rollback → ``systemmove.request_system_move(ns, task, "RolledBack", by="alertmanager", ...)``: the
  task's reconcile moves it like a user's move and records ``by``, ``reason`` and ``key`` in history
  and the Transitioned Event;
* abort → an entry in the Agent's ``status.systemCommands`` (the operator writes no spec and no
  metadata; the CLI's abort is a user's annotation): the Agent's reconcile aborts the rollout exactly
  as for ``kubectl agentops agent abort`` and marks the entry handled; the RolledBack Event names the alert.

Both are idempotent per key (fingerprint + startsAt): a repeat answers "duplicate" and writes nothing.
A response of 503 (an API error) makes Alertmanager retry; refusals are final (200, in the body).
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from .. import alerts, kube
from .. import rollout as ro
from .. import settings as settings_mod
from ..cache import store
from ..runtime import runtime, watched
from ..timeutil import format_time
from .systemmove import request_system_move

log = logging.getLogger(__name__)
BY = "alertmanager"
PATH = "/alerts"
READ_TIMEOUT_SECONDS = 10.0
MAX_TOKEN_BYTES = 4096
ALERT_ACTIONS_TOTAL = Counter("agentops_alert_actions_total",
                              "Alerts received by the webhook receiver, by action asked for and result",
                              ["action", "result"])
WEBHOOK_REQUESTS_TOTAL = Counter("agentops_alert_webhook_requests_total",
                                 "Requests to the Alertmanager webhook receiver, by HTTP status", ["code"])


class TransientError(Exception):
    """The API could not be reached or answered with a server error: Alertmanager should retry."""


def read_token(path: str) -> bytes:
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_TOKEN_BYTES + 1).strip()[:MAX_TOKEN_BYTES]
    except OSError:
        return b""


# ---- carrying decisions out --------------------------------------------------------------------


def rollback(d: alerts.Decision) -> str:
    try:
        result = request_system_move(d.namespace, d.target, "RolledBack", by=BY, reason=d.reason, key=d.key)
    except kube.ApiException as exc:
        if exc.status is not None and exc.status >= 500:
            raise TransientError(f"API error {exc.status}") from None
        return f"refused: API error {exc.status} {exc.reason}"
    return str(result)


def abort(d: alerts.Decision, attempts: int = 3) -> str:
    """Add the abort to the Agent's status.systemCommands (resourceVersion precondition; a conflict reads
    the Agent again and decides again, so a key another replica wrote in between is a duplicate)."""
    obj = store.peek("agents", d.namespace, d.target)
    for _ in range(attempts):
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return f"refused: agent {d.namespace}/{d.target} not found"
        state = ro.RolloutState.model_validate(obj.get("status") or {})
        if d.key in state.system_commands:
            return "duplicate"
        entry = ro.SystemCommand(verb=ro.Verb.ABORT, by=BY, reason=d.reason[:1024], requested_at=datetime.now(UTC))
        patch: dict[str, Any] = {d.key: entry.model_dump(by_alias=True, mode="json", exclude_none=True)}
        for old in ro.evict_system_commands(state.system_commands):
            patch[old] = None
        try:
            kube.patch_status("agents", d.namespace, d.target, {"systemCommands": patch},
                              resource_version=obj["metadata"]["resourceVersion"])
        except kube.ApiException as exc:
            if exc.status == 409:
                obj = kube.get_custom("agents", d.namespace, d.target)
                continue
            if exc.status == 404:
                return f"refused: agent {d.namespace}/{d.target} not found"
            if exc.status is not None and exc.status >= 500:
                raise TransientError(f"API error {exc.status}") from None
            return f"refused: API error {exc.status} {exc.reason}"
        runtime.enqueue("agents", d.namespace, d.target)
        kube.emit_event(obj, "Normal", "AbortRequested", f"rollout abort requested by {BY}: {d.reason}"[:1024])
        return "requested"
    raise TransientError(f"agent {d.namespace}/{d.target} kept changing")


def act(d: alerts.Decision) -> str:
    """One decision carried out: requested, duplicate, refused: <why>, or skipped: <why>."""
    if d.action is None:
        return f"skipped: {d.skipped}"
    if not watched(d.namespace):
        return f"refused: namespace {d.namespace} is not watched by this operator"
    if d.action is alerts.Action.ROLLBACK:
        return rollback(d)
    return abort(d)


def handle(payload: alerts.WebhookPayload) -> tuple[int, list[dict[str, str]]]:
    """Carry every alert out; 503 when any hit a transient API error (Alertmanager retries the group;
    what was already done answers duplicate)."""
    code = 200
    results = []
    for d in alerts.decide(payload):
        action = d.action.value if d.action else "none"
        try:
            outcome = act(d)
        except TransientError as exc:
            outcome, code = f"error: {exc}", 503
        except Exception as exc:  # the API is unreachable: retry later
            log.warning("alert %s (%s) failed: %s", d.alertname, d.fingerprint, exc)
            outcome, code = f"error: {type(exc).__name__}", 503
        result = outcome.split(":", 1)[0]
        ALERT_ACTIONS_TOTAL.labels(action, result).inc()
        if result in ("requested", "refused"):
            log.info("alert %s (%s) %s %s/%s: %s", d.alertname, d.fingerprint, action, d.namespace, d.target, outcome)
        results.append({"alertname": d.alertname, "fingerprint": d.fingerprint, "action": action,
                        "namespace": d.namespace, "target": d.target, "key": d.key, "result": outcome,
                        "at": format_time(datetime.now(UTC))})
    return code, results


# ---- HTTP ------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT_SECONDS  # a slow sender cannot hold a thread forever
    server_version = "agentops-alert-receiver"

    def _reply(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        WEBHOOK_REQUESTS_TOTAL.labels(str(code)).inc()
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code >= 400:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/healthz":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path.split("?")[0] != PATH:
            self._reply(404, {"error": f"not found; Alertmanager posts to {PATH}"})
            return
        token = read_token(settings_mod.current.alert_receiver_token_file)
        if not alerts.bearer_ok(self.headers.get("Authorization"), token):
            self._reply(401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="agentops-alerts"'})
            return
        if self.headers.get("Transfer-Encoding"):
            self._reply(411, {"error": "Content-Length required"})
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._reply(411, {"error": "Content-Length required"})
            return
        if length < 0 or length > alerts.MAX_BODY_BYTES:
            self._reply(413, {"error": f"body larger than {alerts.MAX_BODY_BYTES} bytes"})
            return
        body = self.rfile.read(length)
        try:
            payload = alerts.parse_payload(body)
        except alerts.PayloadError as exc:
            self._reply(400, {"error": str(exc)})
            return
        code, results = handle(payload)
        self._reply(code, {"results": results})

    def log_message(self, *args: Any) -> None:
        pass


class AlertReceiver:
    def __init__(self, port: int, host: str = "0.0.0.0") -> None:
        self.server = http.server.ThreadingHTTPServer((host, port), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="alert-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        cfg = settings_mod.current
        if not read_token(cfg.alert_receiver_token_file):
            log.warning("alert receiver on port %d has no token (--alert-receiver-token-file %r): it refuses "
                        "every request", self.port, cfg.alert_receiver_token_file)
        else:
            log.info("alert receiver listening on port %d (POST %s)", self.port, PATH)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


receiver: AlertReceiver | None = None


def start() -> None:
    global receiver
    port = settings_mod.current.alert_receiver_port
    if port and receiver is None:
        receiver = AlertReceiver(port)
        receiver.start()


def stop() -> None:
    global receiver
    if receiver is not None:
        receiver.stop()
        receiver = None

