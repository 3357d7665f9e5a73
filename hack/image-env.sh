# Sourced by hack/image-*.sh: where images live and what they are called.
# shellcheck shell=bash
IMAGE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # debootstrap lives in sbin
if [[ -z "${CONTAINERS_STORAGE_CONF:-}" ]]; then
  # overlay (fast, layers shared) when the kernel has overlayfs and the storage is not itself on an
  # overlay mount (a build inside a container); else vfs.
  CONTAINERS_STORAGE_CONF="$IMAGE_ROOT/hack/containers-storage-vfs.conf"
  if grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null; then
    fs="$(stat -f -c %T /var/lib 2>/dev/null || true)"
    [[ "$fs" == overlayfs ]] || CONTAINERS_STORAGE_CONF="$IMAGE_ROOT/hack/containers-storage.conf"
  fi
fi
export CONTAINERS_STORAGE_CONF
IMAGE_VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$IMAGE_ROOT/pyproject.toml")"
# The name the chart and manifests pull (values.yaml image.repository) and a short local alias.
IMAGE_REPO="${IMAGE_REPO:-ghcr.io/agentops/agentops-operator}"
IMAGE="$IMAGE_REPO:$IMAGE_VERSION"
IMAGE_LOCAL="localhost/agentops-operator:$IMAGE_VERSION"
IMAGE_ARCHIVE="$IMAGE_ROOT/dist/agentops-operator-$IMAGE_VERSION.oci.tar"
