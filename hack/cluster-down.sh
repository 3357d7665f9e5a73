#!/usr/bin/env bash
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${CLUSTER_NAME:-agentops}"
if [[ -x "$ROOT/.cluster/bin/kwokctl" ]]; then
  "$ROOT/.cluster/bin/kwokctl" delete cluster --name "$NAME" || true
fi
rm -f "$ROOT/.cluster/kubeconfig"
