"""crds/ is generated from the pydantic models and must not drift."""

from __future__ import annotations

from pathlib import Path

import yaml

from agentops_operator import crdgen
from agentops_operator.models import ALL_CRDS

ROOT = Path(__file__).resolve().parents[2]


def test_crds_directory_is_fresh() -> None:
    assert crdgen.main(["--check", "--out", str(ROOT / "crds")]) == 0, "crds/ is stale: run `make crds`"


def _walk(node: object, path: str = "") -> list[str]:
    """Paths in a schema that are not structural (no type and no preserve-unknown-fields)."""
    bad: list[str] = []
    if isinstance(node, dict):
        container = "properties" in node or "items" in node or "additionalProperties" in node
        if container and "type" not in node:
            bad.append(path)
        for key, value in node.items():
            if key in ("properties",):
                for name, sub in value.items():
                    if "type" not in sub and not sub.get("x-kubernetes-preserve-unknown-fields"):
                        bad.append(f"{path}.{name}")
                    bad += _walk(sub, f"{path}.{name}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                bad += _walk(value, f"{path}[]")
    return bad


def test_schemas_are_structural_and_documented() -> None:
    for info in ALL_CRDS:
        crd = crdgen.render(info)
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        assert _walk(schema) == [], info.kind
        for name, prop in schema["properties"]["spec"]["properties"].items():
            assert prop.get("description"), f"{info.kind}.spec.{name} has no description"
        assert "agentops" in crd["spec"]["names"]["categories"]
        assert crd["spec"]["names"]["shortNames"]
        assert version["subresources"]["status"] == {}
        assert version["additionalPrinterColumns"]


def test_rendered_yaml_round_trips() -> None:
    for info in ALL_CRDS:
        text = crdgen.render_text(info)
        assert yaml.safe_load(text) == crdgen.render(info)
