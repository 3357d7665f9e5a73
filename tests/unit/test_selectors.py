"""metav1.LabelSelector matching: Kubernetes semantics per operator, plus algebraic properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentops_operator.selectors import matches

LABELS = {"team": "a", "tier": "gold", "env": "prod"}


def expr(key: str, op: str, *values: str) -> dict:
    req: dict = {"key": key, "operator": op}
    if values:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


# ---- absent / empty ----------------------------------------------------------------------------


@pytest.mark.parametrize("selector", [None, {}, {"matchLabels": {}}, {"matchExpressions": []},
                                      {"matchLabels": None, "matchExpressions": None}])
@pytest.mark.parametrize("labels", [None, {}, LABELS])
def test_absent_or_empty_selector_selects_everything(selector, labels) -> None:
    assert matches(selector, labels) is True


def test_none_labels_behave_like_no_labels() -> None:
    assert not matches({"matchLabels": {"team": "a"}}, None)
    assert matches(expr("team", "NotIn", "a"), None)
    assert matches(expr("team", "DoesNotExist"), None)
    assert not matches(expr("team", "Exists"), None)
    assert not matches(expr("team", "In", "a"), None)


# ---- matchLabels -------------------------------------------------------------------------------


def test_match_labels_exact() -> None:
    assert matches({"matchLabels": {"team": "a"}}, LABELS)
    assert matches({"matchLabels": {"team": "a", "tier": "gold"}}, LABELS)
    assert not matches({"matchLabels": {"team": "b"}}, LABELS)
    assert not matches({"matchLabels": {"missing": "a"}}, LABELS)


def test_match_labels_are_anded() -> None:
    assert not matches({"matchLabels": {"team": "a", "tier": "silver"}}, LABELS)


def test_match_labels_value_is_not_a_prefix_or_case_insensitive_match() -> None:
    assert not matches({"matchLabels": {"team": "A"}}, LABELS)
    assert not matches({"matchLabels": {"tier": "gol"}}, LABELS)
    assert not matches({"matchLabels": {"team": ""}}, LABELS)


def test_match_labels_empty_value_needs_the_key() -> None:
    assert matches({"matchLabels": {"flag": ""}}, {"flag": ""})
    assert not matches({"matchLabels": {"flag": ""}}, {})


# ---- matchExpressions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (expr("team", "In", "a", "b"), True),
        (expr("team", "In", "b", "c"), False),
        (expr("missing", "In", "a"), False),  # In needs the key
        (expr("team", "NotIn", "b", "c"), True),
        (expr("team", "NotIn", "a", "b"), False),
        (expr("missing", "NotIn", "a"), True),  # NotIn holds for an absent key
        (expr("team", "Exists"), True),
        (expr("missing", "Exists"), False),
        (expr("team", "DoesNotExist"), False),
        (expr("missing", "DoesNotExist"), True),
    ],
)
def test_match_expression_operators(selector, expected) -> None:
    assert matches(selector, LABELS) is expected


def test_exists_matches_an_empty_value() -> None:
    assert matches(expr("flag", "Exists"), {"flag": ""})
    assert not matches(expr("flag", "DoesNotExist"), {"flag": ""})


def test_in_with_empty_values_selects_nothing() -> None:
    assert not matches({"matchExpressions": [{"key": "team", "operator": "In", "values": []}]}, LABELS)
    assert not matches({"matchExpressions": [{"key": "team", "operator": "In"}]}, LABELS)


def test_notin_with_empty_values_selects_everything() -> None:
    assert matches({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": []}]}, LABELS)


def test_expressions_are_anded() -> None:
    sel = {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["a"]},
        {"key": "env", "operator": "NotIn", "values": ["prod"]},
    ]}
    assert not matches(sel, LABELS)
    assert matches(sel, {**LABELS, "env": "dev"})


def test_match_labels_and_expressions_are_anded() -> None:
    sel = {"matchLabels": {"team": "a"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]}
    assert matches(sel, LABELS)
    assert not matches(sel, {"team": "a"})
    assert not matches(sel, {"tier": "gold", "team": "b"})


def test_model_dump_of_label_selector_is_understood() -> None:
    """The Quota handler passes the CRD's camelCase dict; the pydantic model produces the same shape."""
    from agentops_operator.models.base import LabelSelector

    sel = LabelSelector.model_validate(
        {"matchLabels": {"team": "a"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}
    ).model_dump(by_alias=True, exclude_none=True)
    assert matches(sel, LABELS)
    assert not matches(sel, {"team": "a", "env": "dev"})


# ---- properties --------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
VALS = st.sampled_from(["", "x", "y", "z"])
LABEL_SETS = st.dictionaries(KEYS, VALS, max_size=4)
OPS = st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"])
REQS = st.builds(lambda k, op, vs: {"key": k, "operator": op, "values": vs},
                 KEYS, OPS, st.lists(VALS, max_size=3, unique=True))
SELECTORS = st.builds(
    lambda ml, me: {"matchLabels": ml, "matchExpressions": me},
    st.dictionaries(KEYS, VALS, max_size=3),
    st.lists(REQS, max_size=4),
)


def reference(req: dict, labels: dict[str, str]) -> bool:
    """Kubernetes' labels.Requirement.Matches, restated."""
    has, val, values = req["key"] in labels, labels.get(req["key"]), set(req["values"])
    return {
        "In": has and val in values,
        "NotIn": not has or val not in values,
        "Exists": has,
        "DoesNotExist": not has,
    }[req["operator"]]


@settings(max_examples=200)
@given(SELECTORS, LABEL_SETS)
def test_matches_agrees_with_reference(selector, labels) -> None:
    want = all(labels.get(k) == v and k in labels for k, v in selector["matchLabels"].items()) and all(
        reference(r, labels) for r in selector["matchExpressions"]
    )
    assert matches(selector, labels) is want


@settings(max_examples=100)
@given(LABEL_SETS, st.data())
def test_a_selector_made_from_a_subset_of_the_labels_matches(labels, data) -> None:
    subset = data.draw(st.sampled_from([{}, labels, dict(list(labels.items())[:1])]))
    assert matches({"matchLabels": subset}, labels)
    assert matches({"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in subset.items()]},
                   labels)
    assert matches({"matchExpressions": [{"key": k, "operator": "Exists"} for k in subset]}, labels)


@settings(max_examples=100)
@given(KEYS, st.lists(VALS, max_size=3, unique=True), LABEL_SETS)
def test_negated_operators_are_complements(key, values, labels) -> None:
    def one(op: str) -> bool:
        return matches({"matchExpressions": [{"key": key, "operator": op, "values": values}]}, labels)

    assert one("In") != one("NotIn")
    assert one("Exists") != one("DoesNotExist")


@settings(max_examples=100)
@given(KEYS, VALS, LABEL_SETS)
def test_match_labels_equals_in_with_one_value(key, value, labels) -> None:
    assert matches({"matchLabels": {key: value}}, labels) == matches(expr(key, "In", value), labels)


@settings(max_examples=100)
@given(SELECTORS, SELECTORS, LABEL_SETS)
def test_concatenating_expressions_is_conjunction(s1, s2, labels) -> None:
    both = {"matchExpressions": s1["matchExpressions"] + s2["matchExpressions"]}
    assert matches(both, labels) == (
        matches({"matchExpressions": s1["matchExpressions"]}, labels)
        and matches({"matchExpressions": s2["matchExpressions"]}, labels)
    )


@settings(max_examples=50)
@given(SELECTORS, LABEL_SETS)
def test_matches_does_not_mutate_inputs(selector, labels) -> None:
    import copy

    s0, l0 = copy.deepcopy(selector), dict(labels)
    matches(selector, labels)
    assert selector == s0
    assert labels == l0
