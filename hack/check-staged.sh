#!/usr/bin/env bash
# Lint + unit tests on exactly what is staged (other people's unstaged work left out).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
git -C "$ROOT" checkout-index -a --prefix="$TMP/"
cd "$TMP"
"$ROOT/.venv/bin/ruff" check operator tests bench
PYTHONPATH="$TMP/operator" "$ROOT/.venv/bin/python" -m agentops_operator.crdgen --check --out crds
PYTHONPATH="$TMP/operator" "$ROOT/.venv/bin/pytest" tests/unit -q -p no:cacheprovider 2>&1 | tail -1
