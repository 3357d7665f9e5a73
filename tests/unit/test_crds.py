"""crds/ and the chart's CRD templates are generated from the pydantic models and must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentops_operator import crdgen
from agentops_operator.models import ALL_CRDS

ROOT = Path(__file__).resolve().parents[2]


def test_crds_directory_is_fresh() -> None:
    assert crdgen.main(["--check", "--out", str(ROOT / "crds"), "--helm-out", ""]) == 0, \
        "crds/ is stale: run `make crds`"


HELM_CRDS = ROOT / "helm" / "agentops" / "templates" / "crds"


def _strip_template(text: str) -> str:
    """The YAML a template renders with crds.install=true and crds.keep=true, minus the include line."""
    keep = []
    for line in text.splitlines():
        action = line.strip()
        if action.startswith("{{") and action.endswith("}}"):
            continue  # whole-line actions: the header, if/end, the labels include
        assert "{{" not in line, f"unexpected inline template action: {line}"
        keep.append(line)
    return "\n".join(keep)


def test_helm_chart_crd_templates_are_generated_from_the_models() -> None:
    assert crdgen.main(["--check", "--out", str(ROOT / "crds"), "--helm-out", str(HELM_CRDS)]) == 0, \
        "helm/agentops/templates/crds/ is stale: run `make crds`"
    ours = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_text() for p in HELM_CRDS.glob("*.yaml")}
    assert sorted(chart) == sorted(ours), "helm/agentops/templates/crds/ must hold exactly the CRDs of crds/"
    for name, text in chart.items():
        lines = text.splitlines()
        assert lines[1] == "{{- if .Values.crds.install }}" and lines[-1] == "{{- end }}", name
        doc = yaml.safe_load(_strip_template(text))
        want = ours[name]
        for key in ("apiVersion", "kind", "spec"):
            assert doc[key] == want[key], (name, key)
        assert doc["metadata"]["name"] == want["metadata"]["name"]
        assert doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        # The keep policy is behind crds.keep; the chart's labels include crds/'s part-of label.
        i = lines.index("    helm.sh/resource-policy: keep")
        assert lines[i - 3] == "  {{- if .Values.crds.keep }}" and lines[i + 1] == "  {{- end }}", name
        assert '{{- include "agentops.baseLabels" . | nindent 4 }}' in text
    helpers = (ROOT / "helm" / "agentops" / "templates" / "_helpers.tpl").read_text()
    base = helpers[helpers.index('define "agentops.baseLabels"'):]
    for key, value in next(iter(ours.values()))["metadata"]["labels"].items():
        assert f"{key}: {value}" in base[:base.index("{{- end }}")]


def test_chart_has_no_crds_directory() -> None:
    # Helm installs crds/ once and never upgrades it; beside the templates it would also collide with them.
    assert not (ROOT / "helm" / "agentops" / "crds").exists()


def test_template_refuses_helm_actions_in_the_spec(monkeypatch) -> None:
    real = crdgen.render

    def braced(info):
        crd = real(info)
        crd["spec"]["names"]["categories"] = ["{{ .Release.Name }}"]
        return crd

    monkeypatch.setattr(crdgen, "render", braced)
    with pytest.raises(ValueError, match="Helm would execute"):
        crdgen.render_helm_template(ALL_CRDS[0])


def test_helm_out_defaults_to_the_chart_when_it_exists(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert crdgen.main(["--out", "crds"]) == 0  # no chart here: only crds/
    assert not (tmp_path / "helm").exists()
    (tmp_path / "helm" / "agentops").mkdir(parents=True)
    assert crdgen.main(["--check", "--out", "crds"]) == 1  # the chart's templates are missing
    assert crdgen.main(["--out", "crds"]) == 0
    assert crdgen.main(["--check", "--out", "crds"]) == 0
    templates = tmp_path / "helm/agentops/templates/crds"
    assert sorted(p.name for p in templates.iterdir()) == sorted(p.name for p in (tmp_path / "crds").iterdir())
    # A CRD without a model (a kind that was removed) is stale, and `make crds` removes it.
    (templates / "agentops.dev_gone.yaml").write_text("x")
    assert crdgen.main(["--check", "--out", "crds"]) == 1
    assert crdgen.main(["--out", "crds"]) == 0
    assert not (templates / "agentops.dev_gone.yaml").exists()
    # A hand edit of a template is stale too.
    path = templates / f"agentops.dev_{ALL_CRDS[0].plural}.yaml"
    path.write_text(path.read_text().replace("helm.sh/resource-policy: keep", "helm.sh/resource-policy: delete"))
    assert crdgen.main(["--check", "--out", "crds"]) == 1


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
