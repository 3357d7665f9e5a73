"""The restricted Pod Security profile every pod the operator creates runs under, and the one-shot
check container that gate and analysis Jobs share."""

from __future__ import annotations

from typing import Any

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
}


def check_container(name: str, image: str, env: list[dict[str, str]], command: list[str] | None = None,
                    args: list[str] | None = None) -> dict[str, Any]:
    """A container whose exit code is a verdict: small, read-only, its message kept on failure."""
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "env": env,
        # The pod's termination message (or the log tail) is what the user sees as the reason.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": {**CONTAINER_SECURITY_CONTEXT, "readOnlyRootFilesystem": True},
    }
    if command:
        container["command"] = list(command)
    if args:
        container["args"] = list(args)
    return container
