#!/usr/bin/env bash
# Start (or reuse) the local control plane with kwokctl's binary runtime.
# Writes .cluster/kubeconfig and links kubectl, helm, kwokctl into .cluster/bin/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME="${CLUSTER_NAME:-agentops}"
DIR="$ROOT/.cluster"
OUT="$("$ROOT/hack/build-control-plane.sh")"
BIN="$OUT/bin"
mkdir -p "$DIR/bin"
for tool in kubectl helm kwokctl kwok; do ln -sf "$BIN/$tool" "$DIR/bin/$tool"; done
export PATH="$DIR/bin:$PATH"
KUBECONFIG_FILE="$DIR/kubeconfig"

healthy() {
  [[ -f "$KUBECONFIG_FILE" ]] && kubectl --kubeconfig "$KUBECONFIG_FILE" --request-timeout=5s get --raw /readyz >/dev/null 2>&1
}

# The cluster's configuration (binaries + stages); a change means the cluster is re-created.
cfg="$DIR/kwokctl.yaml"
{
  cat <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeApiserverBinary: $BIN/kube-apiserver
  kubeControllerManagerBinary: $BIN/kube-controller-manager
  kubeSchedulerBinary: $BIN/kube-scheduler
  kwokControllerBinary: $BIN/kwok
  etcdBinary: $BIN/etcd
  kubectlBinary: $BIN/kubectl
  kubeAuthorization: true
  kubeAdmission: true
  disableQPSLimits: true
YAML
  # kwokctl only adds its default stages when the config has none, so ship them with ours.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$OUT/kwok-stages/$f"
  done
  echo "---"; cat "$ROOT/hack/kwok/stages.yaml"
} > "$cfg"
want="$(sha256sum "$cfg" | cut -d' ' -f1)"
STATE="$HOME/.kwok/clusters/$NAME/agentops-config.sha256"

if kwokctl get clusters 2>/dev/null | grep -qx "$NAME"; then
  if [[ "$(cat "$STATE" 2>/dev/null)" != "$want" ]]; then
    echo "cluster $NAME has an older configuration: re-creating it" >&2
    kwokctl delete cluster --name "$NAME" >&2 || true
  else
    kwokctl get kubeconfig --name "$NAME" > "$KUBECONFIG_FILE" 2>/dev/null || true
    if healthy; then
      echo "cluster $NAME already running"
    else
      # Left over from processes that were killed (a reboot, a stopped session). `kwokctl start`
      # revives it, but kwok then waits minutes for its old node lease to expire before it manages
      # pods again; a fresh cluster is ready in seconds, so re-create it (it is a test cluster).
      echo "cluster $NAME is stopped: re-creating it" >&2
      kwokctl delete cluster --name "$NAME" >&2 || true
    fi
  fi
fi

if ! healthy; then
  kwokctl create cluster --name "$NAME" --config "$cfg" --kubeconfig "$KUBECONFIG_FILE" --wait 120s >&2
  kwokctl get kubeconfig --name "$NAME" > "$KUBECONFIG_FILE"
  echo "$want" > "$STATE"
fi

# Server-side apply keeps this idempotent.
kubectl --kubeconfig "$KUBECONFIG_FILE" apply --server-side -f "$ROOT/hack/kwok/node.yaml" >/dev/null
kubectl --kubeconfig "$KUBECONFIG_FILE" wait --for=condition=Ready node/kwok-node-0 --timeout=60s >/dev/null
echo "cluster $NAME ready; export KUBECONFIG=$KUBECONFIG_FILE PATH=$DIR/bin:\$PATH"
