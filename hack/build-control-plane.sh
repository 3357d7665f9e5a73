#!/usr/bin/env bash
# Builds the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, etcd, kwok, kwokctl, helm) from Go modules into a per-version cache outside the repo.
# Idempotent: a finished build leaves a stamp and is reused by every clone on this machine.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.36.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
HELM_VERSION="${HELM_VERSION:-v3.21.4}"
CACHE_ROOT="${AGENTOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentops}"
BUILD_REV=2  # bump when the way the tools are built changes
OUT="$CACHE_ROOT/k8s-$K8S_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-r$BUILD_REV"
BIN="$OUT/bin"
STAMP="$OUT/.complete"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -f "$STAMP" ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p "$BIN"
start=$(date +%s)
LOG="$OUT/build.log"
: > "$LOG"
# Progress on stderr, one line per stage; Go's own output goes to $LOG (shown if a stage fails).
stage() { echo "==> control plane [$1] $2 (elapsed $(( $(date +%s) - start ))s)" >&2; }
quiet() { "$@" >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; echo "control-plane build failed; full log: $LOG" >&2; exit 1; }; }
echo "==> building the control plane from Go modules into $OUT" >&2
echo "    (kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok, helm): about 15 min on" >&2
echo "    2 cores the first time, most of it compiling Kubernetes; cached for every later run." >&2
stage 1/4 "downloading Go modules (~2-4 min)"

# Wrapper module: k8s.io/kubernetes replaces its staging modules with ./staging paths, which
# only the main module may do, so we replace each with its published v0.Y.Z instead.
WRAP="$OUT/src"
mkdir -p "$WRAP/etcd"
cp "$HERE/k8s-tools/etcd/main.go" "$WRAP/etcd/main.go"
staging_version="v0.${K8S_VERSION#v1.}"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
gomod=$(cd "$WRAP" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
{
  echo "module agentops.dev/k8s-tools"
  echo
  echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
} > "$WRAP/go.mod"
# etcd version pinned by Kubernetes itself
etcd_version=$(grep -E '^\s*go\.etcd\.io/etcd/client/v3 ' "$gomod" | awk '{print $2}')
(
  cd "$WRAP"
  quiet go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$etcd_version"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    quiet go get -tool "k8s.io/kubernetes/cmd/$c@$K8S_VERSION"
  done
  quiet go mod tidy
  stage 2/4 "compiling kube-apiserver, controller-manager, scheduler, kubectl, etcd (~8-10 min)"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  quiet go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  quiet go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" ./etcd
)
stage 3/4 "kwok and kwokctl (~1-2 min)"
GOBIN="$BIN" quiet go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
# helm's capabilities default to the Kubernetes version stamped here (else v1.20 and kubeVersion checks fail).
hv="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
hv="$hv -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
hv="$hv -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
stage 4/4 "helm (~1-2 min)"
GOBIN="$BIN" quiet go install -trimpath -ldflags "-s -w $hv" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
# kwok's default stages ship in its module; kwokctl only adds them when we add none.
moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])' || true)
if [[ -n "$moddir" && -d "$moddir/kustomize/stage" ]]; then
  rm -rf "$OUT/kwok-stages"; cp -r "$moddir/kustomize/stage" "$OUT/kwok-stages"; chmod -R u+w "$OUT/kwok-stages"
fi
end=$(date +%s)
echo "$((end - start))" > "$OUT/build-seconds"
touch "$STAMP"
echo "built control plane in $((end - start))s" >&2
echo "$OUT"
