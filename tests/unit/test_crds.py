"""crds/ is generated from the pydantic models and must not drift."""

from __future__ import annotations

from pathlib import Path

import yaml

from agentops_operator import crdgen
from agentops_operator.models import ALL_CRDS

ROOT = Path(__file__).resolve().parents[2]


def test_crds_directory_is_fresh() -> None:
    assert crdgen.main(["--check", "--out", str(ROOT / "crds"), "--helm-out", ""]) == 0, \
        "crds/ is stale: run `make crds`"


def test_helm_chart_crds_are_identical_copies() -> None:
    helm_crds = ROOT / "helm" / "agentops" / "crds"
    assert crdgen.main(["--check", "--out", str(ROOT / "crds"), "--helm-out", str(helm_crds)]) == 0, \
        "helm/agentops/crds/ is stale: run `make crds`"
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in helm_crds.glob("*.yaml")}
    assert sorted(chart) == sorted(ours), "helm/agentops/crds/ must hold exactly the files of crds/"
    assert chart == ours


def test_helm_out_defaults_to_the_chart_when_it_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert crdgen.main(["--out", "crds"]) == 0  # no chart here: only crds/
    assert not (tmp_path / "helm").exists()
    (tmp_path / "helm" / "agentops").mkdir(parents=True)
    assert crdgen.main(["--check", "--out", "crds"]) == 1  # the chart's copy is missing
    assert crdgen.main(["--out", "crds"]) == 0
    assert crdgen.main(["--check", "--out", "crds"]) == 0
    assert sorted(p.name for p in (tmp_path / "helm/agentops/crds").iterdir()) == \
        sorted(p.name for p in (tmp_path / "crds").iterdir())


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
