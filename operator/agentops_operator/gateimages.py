"""Which images a namespace lets gate Jobs run: the allow-list of its gate-policy ConfigMaps. Pure.

A gate-policy ConfigMap (label `agentops.dev/gate-policy=true`) may carry `data.allowedImages`: image
prefixes, one per line (blank lines and `#` comments ignored). A Job gate's image (and so a deploy
command, which runs in the deploy gate's image) must start with one prefix of every ConfigMap that
has the key; ConfigMaps without it restrict nothing. The admission policy agentops-gate-images
(manifests/admission/gate-images.yaml) refuses such tasks when they are written; this module is the
operator's check at the move (a policy added later, or admission not installed).
"""

from __future__ import annotations

from typing import Any

from .lifecycle import Phase, transition_key
from .models.task import AgentTaskSpec, Gate, JobGateSpec

ALLOWED_IMAGES_KEY = "allowedImages"
DEPLOY = transition_key(Phase.DONE, Phase.DEPLOYED)


def allow_lists(configmaps: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(ConfigMap name, prefixes) of each gate-policy ConfigMap that restricts images, by name."""
    out = []
    for cm in sorted(configmaps, key=lambda c: str(c["metadata"]["name"])):
        raw = (cm.get("data") or {}).get(ALLOWED_IMAGES_KEY)
        if raw is None:
            continue
        prefixes = [p.strip() for p in str(raw).splitlines() if p.strip() and not p.strip().startswith("#")]
        out.append((str(cm["metadata"]["name"]), prefixes))
    return out


def refusing(image: str, lists: list[tuple[str, list[str]]]) -> tuple[str, list[str]] | None:
    """The first allow-list that does not allow `image`, or None."""
    return next(((name, prefixes) for name, prefixes in lists if not any(image.startswith(p) for p in prefixes)),
                None)


def _field(spec: AgentTaskSpec, key: str, gate: Gate) -> str:
    """Where the gate comes from: the task's own override, or the namespace policy / the default."""
    for i, t in enumerate(spec.gates or []):
        if t.transition == key:
            for j, g in enumerate(t.gates):
                if g.name == gate.name:
                    return f"spec.gates[{i}].gates[{j}].job.image"
    return f"gate {gate.name} of {key} (namespace policy or default) image"


def refusal(spec: AgentTaskSpec, key: str, gates: list[Gate], configmaps: list[dict[str, Any]]) -> str | None:
    """Why the move's Job gates may not run (naming the field), or None when every image is allowed."""
    lists = allow_lists(configmaps)
    if not lists:
        return None
    for gate in gates:
        if gate.type != "Job":
            continue
        image = (gate.job or JobGateSpec()).image
        refused = refusing(image, lists)
        if refused is None:
            continue
        cm, prefixes = refused
        field = _field(spec, key, gate)
        if key == DEPLOY and spec.deploy and spec.deploy.command:
            field = f"spec.deploy.command (runs in {field})"
        allowed = ", ".join(prefixes) or "none"
        return (f"{field}: image {image} is not allowed in this namespace: gate-policy ConfigMap {cm} "
                f"data.{ALLOWED_IMAGES_KEY} allows images starting with {allowed}")
    return None
