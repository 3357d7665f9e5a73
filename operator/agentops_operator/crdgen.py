"""Render the pydantic models into CustomResourceDefinitions (crds/*.yaml) and the chart's templates.

Run: python -m agentops_operator.crdgen [--check] [--out crds] [--helm-out helm/agentops/templates/crds]

The Helm chart ships the same CRDs as templates (not in its crds/ directory, which Helm installs once
and never upgrades): each is the crds/ file with its metadata templated, wrapped in
`{{- if .Values.crds.install }}` and annotated `helm.sh/resource-policy: keep` when `crds.keep`, so
`helm upgrade` updates the CRDs and `helm uninstall` leaves them (and every object) in place. By
default the templates are written (and checked) too whenever the chart (helm/agentops/) exists under
the working directory.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from . import GROUP, VERSION
from .models import ALL_CRDS
from .models.base import CRDInfo, K8sModel

# JSON Schema keys that structural OpenAPI v3 schemas do not accept.
_DROP = {"title", "$defs", "discriminator", "examples", "const", "propertyNames"}


def _deref(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            target.update(extra)
            return _deref(target, defs)
        return {k: _deref(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, defs) for v in node]
    return node


def _structural(node: Any) -> Any:
    """Turn pydantic's JSON Schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "anyOf" in node:
        # Optional[X] is rendered as anyOf [X, null]: the field is simply optional.
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unsupported union in schema: {options}")
        merged = dict(options[0])
        merged.update(node)
        node = merged
    if "const" in node:
        node["enum"] = [node["const"]]
    if node.get("default", 0) is None:
        node.pop("default")
    for key in _DROP:
        node.pop(key, None)
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if node.get("type") == "object" or "properties" in node:
        node["type"] = "object"
        props = node.get("properties")
        if props is not None:
            node["properties"] = {k: _structural(v) for k, v in props.items()}
        ap = node.get("additionalProperties")
        if ap is True or ap == {}:
            node.pop("additionalProperties")
            node["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(ap, dict):
            node["additionalProperties"] = _structural(ap)
        elif ap is False:
            node.pop("additionalProperties")
        if "required" in node and not node["required"]:
            node.pop("required")
    if node.get("type") == "array" and "items" in node:
        node["items"] = _structural(node["items"])
    if not node.get("type") and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["x-kubernetes-preserve-unknown-fields"] = True
    if node.get("format") == "date-time":
        node["type"] = "string"
    return node


def model_schema(model: type[K8sModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _structural(_deref(raw, defs))


def render(info: CRDInfo) -> dict[str, Any]:
    spec_schema = model_schema(info.spec)
    status_schema = model_schema(info.status)
    status_schema["description"] = f"What the operator observed and did for this {info.kind}."
    spec_schema["description"] = f"Desired state of the {info.kind}; owned by users and GitOps."
    root: dict[str, Any] = {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if info.root_validations:
        root["x-kubernetes-validations"] = [dict(v) for v in info.root_validations]
    subresources: dict[str, Any] = {"status": {}}
    if info.scale:
        scale: dict[str, Any] = {
            "specReplicasPath": info.scale.spec_replicas_path,
            "statusReplicasPath": info.scale.status_replicas_path,
        }
        if info.scale.label_selector_path:
            scale["labelSelectorPath"] = info.scale.label_selector_path
        subresources["scale"] = scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "agentops"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": subresources,
                    "additionalPrinterColumns": [c.wire() for c in info.printer_columns],
                }
            ],
        },
    }


# The Helm chart and its CRD templates (relative to the working directory, like --out).
HELM_CHART = Path("helm/agentops")
HELM_CRDS = HELM_CHART / "templates" / "crds"

HEADER = "# Generated by `make crds` from operator/agentops_operator/models; do not edit.\n"
HELM_HEADER = "{{- /* Generated by `make crds` from operator/agentops_operator/models; do not edit. */}}\n"


def render_text(info: CRDInfo) -> str:
    return HEADER + yaml.safe_dump(render(info), sort_keys=False, width=120)


def render_helm_template(info: CRDInfo) -> str:
    """The chart's template of the CRD: crds/'s document with templated metadata, behind crds.install.

    Only metadata differs from crds/: the chart's labels (which include crds/'s
    app.kubernetes.io/part-of) and, with crds.keep, the keep policy. apiVersion, kind, name and spec
    are crds/'s, dumped the same way.
    """
    crd = render(info)
    spec = yaml.safe_dump({"spec": crd["spec"]}, sort_keys=False, width=120)
    if "{{" in spec or "}}" in spec:
        # Helm would read it as a template action: a model description must not contain braces pairs.
        raise ValueError(f"{info.kind}: the CRD spec contains '{{{{' or '}}}}', which Helm would execute")
    head = yaml.safe_dump({k: crd[k] for k in ("apiVersion", "kind")}, sort_keys=False)
    meta = (
        "metadata:\n"
        f"  name: {crd['metadata']['name']}\n"
        "  labels:\n"
        '    {{- include "agentops.baseLabels" . | nindent 4 }}\n'
        "    app.kubernetes.io/component: crds\n"
        "  {{- if .Values.crds.keep }}\n"
        "  annotations:\n"
        "    # helm uninstall leaves the CRD, and so every object of this kind, in place.\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
    )
    return HELM_HEADER + "{{- if .Values.crds.install }}\n" + head + meta + spec + "{{- end }}\n"


def _expected(out: Path, helm: bool) -> dict[Path, str]:
    render_fn = render_helm_template if helm else render_text
    return {out / f"{GROUP}_{info.plural}.yaml": render_fn(info) for info in ALL_CRDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="crds", type=Path)
    parser.add_argument(
        "--helm-out", default=None,
        help=f"also write the chart's CRD templates here (default: {HELM_CRDS} if {HELM_CHART} exists; '' for none)",
    )
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    helm_out = HELM_CRDS if args.helm_out is None and HELM_CHART.is_dir() else args.helm_out or None
    files = _expected(args.out, helm=False)
    if helm_out:
        files.update(_expected(Path(helm_out), helm=True))
    stale = []
    for path, text in files.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    # A CRD whose model is gone must not linger in either place.
    for out in {p.parent for p in files}:
        for extra in sorted(set(out.glob(f"{GROUP}_*.yaml")) - set(files)):
            if args.check:
                stale.append(f"{extra} (no model)")
            else:
                extra.unlink()
    if stale:
        print("stale CRDs (run `make crds`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def unknown_keys(value: object, schema: dict[str, Any], path: str = "status") -> list[str]:
    """Keys the API server would prune silently: not in the structural schema (a misspelt status field)."""
    out: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, v in value.items():
            if key not in schema["properties"]:
                out.append(f"{path}.{key}")
            else:
                out += unknown_keys(v, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            out += unknown_keys(v, schema["items"], f"{path}[{i}]")
    return out
