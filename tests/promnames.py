"""Metric names in PromQL expressions, and whether an operator's /metrics exposes them.

Shared by the dashboard checks (tests/unit/test_dashboard.py, tests/e2e/test_metrics.py) and the
alert rules' checks: `metric_names(expr)` finds the metric names an expression selects,
`exposed(text)` reads the families and samples of a Prometheus text exposition, and
`missing(names, exposed)` lists the names a scrape does not have (a histogram family counts for its
`_bucket`, `_count` and `_sum` series even before its first observation).
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[1] / "helm" / "agentops" / "dashboards" / "agentops.json"

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset",
             "bool", "atan2", "inf", "nan"}
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum", "_created"), "summary": ("_count", "_sum", "_created"),
             "counter": ("_total", "_created")}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables such as $namespace, label
    matchers, grouping clauses, durations, strings and functions are not names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "0", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in _IDENT.finditer(text):
        name = m.group(1)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if name.lower() in _KEYWORDS or re.fullmatch(r"\d+[smhdwy]", name):
            continue
        names.add(name)
    return names


def dashboard_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every panel, rows' nested panels included."""
    for panel in dashboard.get("panels") or []:
        for sub in [panel, *(panel.get("panels") or [])]:
            for target in sub.get("targets") or []:
                yield sub, target


def dashboard_metric_names(path: Path = DASHBOARD) -> set[str]:
    dashboard = json.loads(path.read_text())
    names: set[str] = set()
    for _, target in dashboard_targets(dashboard):
        names |= metric_names(target.get("expr") or "")
    for var in (dashboard.get("templating") or {}).get("list") or []:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if isinstance(query, str) and var.get("type") == "query":
            # label_values(metric, label)
            m = re.match(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)", query)
            if m:
                names.add(m.group(1))
    return names


def exposed(text: str) -> dict[str, str]:
    """name -> type for every family (`# TYPE`) and sample name of a text exposition."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            out[name] = kind.strip()
        elif line and not line.startswith("#"):
            out.setdefault(re.split(r"[{\s]", line, maxsplit=1)[0], "sample")
    return out


def missing(names: Iterable[str], have: dict[str, str]) -> list[str]:
    def present(name: str) -> bool:
        if name in have:
            return True
        for kind, suffixes in _SUFFIXES.items():
            for suffix in suffixes:
                if name.endswith(suffix) and have.get(name[: -len(suffix)]) == kind:
                    return True
        return False

    return sorted(n for n in names if not present(n))


def scrape(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode())
