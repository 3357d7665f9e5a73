#!/usr/bin/env bash
# The operator image's base, made here from Debian packages (no image registry needed):
# debootstrap a bookworm minbase rootfs with python3, trim it, commit it to local containers storage.
# Cached by content: the tag carries a hash of this script, so a rebuilt base happens only when the
# recipe changes. Prints the image name on stdout; progress on stderr.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/image-env.sh
source "$HERE/image-env.sh"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-venv
recipe="$(sha256sum "$HERE/image-base.sh" | cut -c1-12)"
BASE="localhost/agentops-base:$SUITE-$recipe"

if buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  echo "$BASE"; exit 0
fi
start=$(date +%s)
echo "==> base image $BASE: debootstrap $SUITE minbase + $PACKAGES (about 2-4 min, once)" >&2
work="$(mktemp -d /var/tmp/agentops-base.XXXXXX)"
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2; echo "debootstrap failed (log above)" >&2; exit 1; }
r="$work/rootfs"
# What an image never uses: package caches and lists, docs, man pages, translations.
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
       "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
       "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
find "$r/usr/lib/python3"* -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
echo "deb $MIRROR $SUITE main" > "$r/etc/apt/sources.list"
ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
tar -C "$r" -cf - . | tar -C "$mnt" -xpf -
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd /bin/sh --label "org.opencontainers.image.description=Debian $SUITE minbase + $PACKAGES (agentops hack/image-base.sh)" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$BASE" >/dev/null
echo "==> base image built in $(( $(date +%s) - start ))s" >&2
echo "$BASE"
