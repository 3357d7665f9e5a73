"""merge_patch writes nothing when the stored status already is what the handler wants."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentops_operator.mergepatch import merge_patch, strip_none


def apply(old: dict, patch: dict) -> dict:
    """RFC 7386, as the API server applies it."""
    out = dict(old)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = apply(out[k], v)
        else:
            out[k] = strip_none(v)
    return out


def test_nulls_inside_nested_objects_are_not_a_change() -> None:
    stored = {"rollout": {"currentRevision": "a"}, "phase": "Healthy", "activeTasks": 3}
    want = {"rollout": {"currentRevision": "a", "pausedAt": None}, "phase": "Healthy", "currentStep": None}
    assert merge_patch(stored, want) == {}


def test_changes_and_deletions() -> None:
    stored = {"rollout": {"a": 1, "gone": 2}, "phase": "Healthy", "activeTasks": 3, "step": "x"}
    want = {"rollout": {"a": 1, "b": None, "c": 5}, "phase": "Degraded", "step": None}
    patch = merge_patch(stored, want)
    assert patch == {"rollout": {"c": 5, "gone": None}, "phase": "Degraded", "step": None}
    assert apply(stored, patch) == {"rollout": {"a": 1, "c": 5}, "phase": "Degraded", "activeTasks": 3}


json_leaf = st.one_of(st.none(), st.integers(-3, 3), st.sampled_from(["a", "b"]))
json_obj = st.recursive(st.dictionaries(st.sampled_from("abcd"), json_leaf, max_size=4),
                        lambda inner: st.dictionaries(st.sampled_from("abcd"), st.one_of(json_leaf, inner), max_size=4),
                        max_leaves=12)


@given(json_obj, json_obj)
def test_property_applying_the_patch_gives_what_was_wanted_for_the_keys_wanted(old: dict, new: dict) -> None:
    stored = strip_none(old)
    result = apply(stored, merge_patch(stored, new))
    for k, v in new.items():
        if v is None:
            assert k not in result
        else:
            assert result[k] == strip_none(v)
    assert merge_patch(result, new) == {}  # idempotent: a second reconcile writes nothing
