"""The version is single-sourced in pyproject.toml; everything that names it must agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import agentops_operator

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_package_version_is_pyproject_version() -> None:
    assert agentops_operator.__version__ == VERSION


def test_chart_app_version_and_manifest_image_tag_follow() -> None:
    chart = yaml.safe_load((ROOT / "helm/agentops/Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    docs = yaml.safe_load_all((ROOT / "manifests/operator/deployment.yaml").read_text())
    (deploy,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deploy["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{VERSION}")


@pytest.mark.parametrize("module", ["agentops_operator", "agentops_operator.cli"])
def test_console_scripts_print_the_version(module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f" {VERSION}")
