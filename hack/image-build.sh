#!/usr/bin/env bash
# `make image`: build hack/Containerfile daemonless with buildah (vfs storage, chroot isolation) on the
# local base (hack/image-base.sh), tag it with the version from pyproject.toml, and write an OCI
# archive to dist/ (`podman load`, `docker load`, `kind load image-archive` accept it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/image-env.sh
source "$HERE/image-env.sh"
cd "$IMAGE_ROOT"
start=$(date +%s)
base="$("$HERE/image-base.sh")"
args=(--layers --isolation chroot -f hack/Containerfile --build-arg "BASE=$base" -t "$IMAGE" -t "$IMAGE_LOCAL")
# A TLS-inspecting proxy signs PyPI's certificate with a CA only the host trusts: lend the build
# stage the host's bundle, read-only, for pip (never copied into a layer).
ca="${AGENTOPS_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
if [[ -f "$ca" ]]; then
  args+=(--volume "$ca:/run/agentops-build-ca.crt:ro" --build-arg PIP_CERT=/run/agentops-build-ca.crt)
fi
echo "==> image $IMAGE from $base" >&2
buildah build --quiet "${args[@]}" . >/dev/null
id="$(buildah images --noheading --no-trunc --format "{{.ID}}" "$IMAGE" | awk 'NR == 1')"; id="${id#sha256:}"
mkdir -p dist
if [[ "$(cat "$IMAGE_ARCHIVE.id" 2>/dev/null)" != "$id" || ! -f "$IMAGE_ARCHIVE" ]]; then
  rm -f "$IMAGE_ARCHIVE" "$IMAGE_ARCHIVE.id"
  buildah push --quiet "$IMAGE" "oci-archive:$IMAGE_ARCHIVE:$IMAGE" >/dev/null
  echo "$id" > "$IMAGE_ARCHIVE.id"
fi
size="$(buildah images --noheading --format '{{.Size}}' "$IMAGE" | awk 'NR == 1')"
echo "==> $IMAGE (id ${id:0:12}, $size) built in $(( $(date +%s) - start ))s; archive $(du -h "$IMAGE_ARCHIVE" | cut -f1) at ${IMAGE_ARCHIVE#"$IMAGE_ROOT"/}" >&2
