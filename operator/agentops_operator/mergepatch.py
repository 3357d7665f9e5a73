"""The smallest JSON merge patch (RFC 7386) that takes a stored status to the one a handler wants.

The API server drops nulls on write (a null in a merge patch deletes the key), so comparing a wanted
status that carries `None`s with the stored one always finds a difference and writes every time;
this compares what would actually be stored. Top-level keys the handler does not mention are left
alone (other writers own them); inside a nested object the handler owns, keys it dropped are deleted.
"""

from __future__ import annotations

from typing import Any


def strip_none(value: Any) -> Any:
    """What the API server stores for `value`: no null-valued keys at any depth."""
    if isinstance(value, dict):
        return {k: strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_none(v) for v in value]
    return value


def merge_patch(old: dict[str, Any], new: dict[str, Any], owned: bool = False) -> dict[str, Any]:
    """Patch for the keys of `new`; with `owned`, keys of `old` missing from `new` are deleted too."""
    patch: dict[str, Any] = {}
    for key, want in new.items():
        have = old.get(key)
        if want is None:
            if key in old:
                patch[key] = None
        elif isinstance(want, dict) and isinstance(have, dict):
            sub = merge_patch(have, want, owned=True)
            if sub:
                patch[key] = sub
        elif strip_none(want) != have:
            patch[key] = strip_none(want)
    if owned:
        for key in old:
            if key not in new:
                patch[key] = None
    return patch
