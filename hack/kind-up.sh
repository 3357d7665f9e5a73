#!/usr/bin/env bash
# Create (or reuse) a kind cluster from kind-config.yaml and write its kubeconfig to
# .cluster/kubeconfig-kind. Unlike the default kwok cluster (`make cluster-up`), pods really run.
#
#   hack/kind-up.sh                      # create the cluster "agentops"
#   KIND_CLUSTER_NAME=x hack/kind-up.sh  # another name
#   KIND_NODE_IMAGE=kindest/node:v1.36.4@sha256:... hack/kind-up.sh   # override the node image
#   hack/kind-up.sh --delete             # delete it again
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${KIND_CLUSTER_NAME:-agentops}"
CONFIG="$ROOT/kind-config.yaml"
KUBECONFIG_FILE="$ROOT/.cluster/kubeconfig-kind"

command -v kind >/dev/null || { echo "kind not found: https://kind.sigs.k8s.io/docs/user/quick-start/#installation" >&2; exit 1; }

if [[ "${1:-}" == "--delete" ]]; then
  kind delete cluster --name "$NAME" --kubeconfig "$KUBECONFIG_FILE"
  rm -f "$KUBECONFIG_FILE"
  exit 0
fi

mkdir -p "$ROOT/.cluster"
if kind get clusters 2>/dev/null | grep -qx "$NAME"; then
  echo "kind cluster $NAME already exists; reusing it" >&2
else
  args=(create cluster --name "$NAME" --config "$CONFIG" --kubeconfig "$KUBECONFIG_FILE" --wait 180s)
  [[ -n "${KIND_NODE_IMAGE:-}" ]] && args+=(--image "$KIND_NODE_IMAGE")
  kind "${args[@]}"
fi
kind get kubeconfig --name "$NAME" > "$KUBECONFIG_FILE"
chmod 600 "$KUBECONFIG_FILE"
KUBECONFIG="$KUBECONFIG_FILE" kubectl wait --for=condition=Ready nodes --all --timeout=180s >/dev/null

cat <<MSG
kind cluster $NAME ready; kubeconfig: $KUBECONFIG_FILE

  export KUBECONFIG=$KUBECONFIG_FILE
  make demo CLUSTER=current     # CRDs, roles, admission policy, operator, samples, dashboard
  make test CLUSTER=current     # lint, unit and e2e tests against this cluster

kubectl (v1.36) and helm (v3) must be on PATH (.cluster/bin has both after \`make cluster-up\`). The e2e tests' kwok annotations (agentops.dev/kwok-*) have no
effect on kind: pods really pull and run their images there.
Delete the cluster with: hack/kind-up.sh --delete
MSG
