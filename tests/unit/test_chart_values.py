"""helm/agentops/values.schema.json is closed and covers values.yaml (no helm needed; the e2e tests in
tests/e2e/test_helm.py run the same values through helm itself)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "agentops"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())

# Kubernetes types rendered verbatim into the manifests: their insides are validated by the API server
# (and helm's OpenAPI check at install), not by the chart. Adding one here is a review decision.
PASSTHROUGH = {
    "#/definitions/volumeSource",
    "#/definitions/affinity.nodeAffinity",
    "#/definitions/affinity.podAffinity",
    "#/definitions/affinity.podAntiAffinity",
    "#.global",
}


def _resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    if "$ref" in node:
        name = node["$ref"].removeprefix("#/definitions/")
        return SCHEMA["definitions"][name], f"#/definitions/{name}"
    return node, None


def _objects(node: Any, path: str, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every schema node of type object, with its path; definitions once each."""
    if not isinstance(node, dict):
        return []
    node, ref = _resolve(node)
    if ref:
        if ref in seen:
            return []
        seen.add(ref)
        path = ref
    found = [(path, node)] if node.get("type") == "object" or "properties" in node else []
    for key, sub in (node.get("properties") or {}).items():
        found += _objects(sub, f"{path}.{key}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _objects(node[key], f"{path}[]", seen)
    for sub in node.get("anyOf") or []:
        found += _objects(sub, path, seen)
    return found


def test_every_object_level_is_closed() -> None:
    objects = _objects(SCHEMA, "#", set())
    assert len(objects) > 40  # the walk reaches nested levels and definitions
    open_levels, passthrough = [], set()
    for path, node in objects:
        ap = node.get("additionalProperties")
        if str(node.get("$comment", "")).startswith("passthrough:"):
            passthrough.add(path)
        elif ap is False:
            assert node.get("properties"), f"{path}: closed but declares no properties"
        elif not isinstance(ap, dict):
            open_levels.append(path)
    assert open_levels == [], f"object levels without additionalProperties false (or a value schema): {open_levels}"
    assert passthrough == PASSTHROUGH


def test_every_array_declares_its_items() -> None:
    def arrays(node: Any, path: str) -> list[str]:
        if isinstance(node, dict):
            bad = [path] if node.get("type") == "array" and not isinstance(node.get("items"), dict) else []
            return bad + [p for k, v in node.items() for p in arrays(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in arrays(v, f"{path}[{i}]")]
        return []

    assert arrays(SCHEMA, "#") == []


def _undeclared(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Keys of values.yaml the schema does not declare (what helm would refuse as additional properties)."""
    schema, _ = _resolve(schema)
    if str(schema.get("$comment", "")).startswith("passthrough:"):
        return []
    bad: list[str] = []
    if isinstance(value, dict):
        props, ap = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, sub in value.items():
            if key in props:
                bad += _undeclared(sub, props[key], f"{path}.{key}")
            elif isinstance(ap, dict):
                bad += _undeclared(sub, ap, f"{path}.{key}")
            else:
                bad.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            bad += _undeclared(item, schema["items"], f"{path}[{i}]")
    return bad


def test_values_yaml_keys_are_all_declared_and_documented() -> None:
    assert _undeclared(VALUES, SCHEMA, "") == []
    # Every top-level value the schema knows has a default in values.yaml (where it is documented),
    # except Helm's own `global`.
    assert set(SCHEMA["properties"]) - {"global"} == set(VALUES)


def test_the_walk_would_catch_a_typo_and_an_open_level() -> None:
    # The two checks above must be able to fail: a misspelt key and a level left open.
    assert _undeclared({"imag": {"tag": "x"}}, SCHEMA, "") == [".imag"]
    assert _undeclared({"securityContext": {"readOnlyRootFilesytem": False}}, SCHEMA, "") == \
        [".securityContext.readOnlyRootFilesytem"]
    opened = {"type": "object", "properties": {"x": {"type": "object", "properties": {"y": {"type": "string"}}}},
              "additionalProperties": False}
    levels = _objects(opened, "#", set())
    assert [p for p, n in levels if n.get("additionalProperties") is not False] == ["#.x"]


def test_crds_values_default_to_install_and_keep() -> None:
    assert VALUES["crds"] == {"install": True, "keep": True}
