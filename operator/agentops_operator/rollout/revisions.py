"""Revisions: the hash that names one, the ControllerRevision history, and the config merge it covers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Same alphabet as Kubernetes' rand.SafeEncodeString (no vowels, no confusable digits), so a
# revision looks like a pod-template-hash and never spells words.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION_HASH_LENGTH = 10


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal data gives equal text in every process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def revision_hash(pod_template: Mapping[str, Any], merged_config: Mapping[str, Any]) -> str:
    """Short deterministic name for a revision: everything that affects pods, config included.

    Uses sha256 (not Python's ``hash()``, which is salted per process) over canonical JSON.
    """
    digest = hashlib.sha256(
        canonical_json({"template": pod_template, "config": merged_config}).encode()
    ).digest()
    number = int.from_bytes(digest[:16], "big")
    chars = []
    for _ in range(REVISION_HASH_LENGTH):
        number, rem = divmod(number, len(_SAFE_ALPHABET))
        chars.append(_SAFE_ALPHABET[rem])
    return "".join(chars)


@dataclass(frozen=True)
class RevisionRecord:
    """One ControllerRevision: its monotonically increasing number and the revision hash."""

    number: int
    revision: str


def next_revision_number(history: Iterable[RevisionRecord]) -> int:
    return max((r.number for r in history), default=0) + 1


def record_revision(history: Sequence[RevisionRecord], revision: str) -> tuple[RevisionRecord, bool]:
    """The record ``revision`` should have as the newest: reuse and renumber like StatefulSets.

    Returns ``(record, changed)``. An existing revision that is already the newest keeps its
    number; an older one is bumped to ``max + 1`` so "undo to previous" keeps meaning previous.
    """
    existing = next((r for r in history if r.revision == revision), None)
    newest = max((r.number for r in history), default=0)
    if existing is not None and existing.number == newest:
        return existing, False
    return RevisionRecord(newest + 1, revision), True


def revisions_to_prune(history: Sequence[RevisionRecord], limit: int, live: Iterable[str | None]) -> list[str]:
    """Oldest revisions beyond ``limit`` that nothing live (stable/current/desired) still needs."""
    if limit < 0:
        raise ValueError("revisionHistoryLimit must be >= 0")
    keep_live = {r for r in live if r}
    candidates = sorted((r for r in history if r.revision not in keep_live), key=lambda r: r.number)
    excess = len(candidates) - limit
    return [r.revision for r in candidates[:excess]] if excess > 0 else []


def resolve_undo_target(
    history: Sequence[RevisionRecord], stable: str | None, to_number: int | None
) -> str | None:
    """The revision ``undo [--to-revision N]`` means, or None if there is no such revision.

    Without N: the newest revision older than the stable one (``kubectl rollout undo``).
    """
    if to_number is not None:
        return next((r.revision for r in history if r.number == to_number), None)
    stable_number = next((r.number for r in history if r.revision == stable), None)
    older = [
        r
        for r in history
        if r.revision != stable and (stable_number is None or r.number < stable_number)
    ]
    return max(older, key=lambda r: r.number).revision if older else None


def merge_config(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge config layers (global → environment → instance); later layers win key by key.

    Semantics are JSON Merge Patch (RFC 7386): nested mappings merge recursively, any other value
    replaces, and an explicit ``None`` in a later layer removes the key.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged = _merge_patch(merged, layer)
    return merged


def _merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_patch(out[key], value)
        elif isinstance(value, Mapping):
            out[key] = _merge_patch({}, value)  # drops nested Nones too
        else:
            out[key] = value
    return out


def config_provenance(layers: Sequence[tuple[str, Mapping[str, Any] | None]]) -> dict[str, str]:
    """Which layer the final value of each (dotted) key came from, for ``agent status``."""
    source: dict[str, str] = {}

    def walk(prefix: str, patch: Mapping[str, Any], layer: str) -> None:
        for key, value in patch.items():
            path = f"{prefix}{key}"
            if value is None:
                for k in [k for k in source if k == path or k.startswith(path + ".")]:
                    del source[k]
            elif isinstance(value, Mapping):
                for k in [k for k in source if k == path]:
                    del source[k]  # a scalar replaced by a mapping
                walk(path + ".", value, layer)
            else:
                for k in [k for k in source if k.startswith(path + ".")]:
                    del source[k]  # a mapping replaced by a scalar
                source[path] = layer

    for name, layer in layers:
        if layer:
            walk("", layer, name)
    return source
