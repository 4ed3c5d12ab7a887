#!/usr/bin/env bash
# Build the local base image (Debian bookworm, minbase, with Python 3.11) with debootstrap and
# `docker import`, for machines that cannot pull python:3.11-slim-bookworm from a registry.
# Cached: does nothing when the tag already exists. Usage: hack/build-base-image.sh [TAG]
set -euo pipefail

TAG=${1:-${BASE_IMAGE_LOCAL:-mlops-platform/base:bookworm}}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "build-base-image: $*" >&2; }

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG exists; not rebuilding"
  exit 0
fi
if [[ ${CHECK_ONLY:-} == 1 ]]; then
  log "not built yet: $TAG"
  exit 10
fi
command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install debootstrap)"; exit 3; }

root=$(mktemp -d /tmp/mlops-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
log "debootstrap $SUITE into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# Keep the image small: no apt lists, caches, docs or locales.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
log "docker import as $TAG"
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
docker image inspect "$TAG" --format "build-base-image: {{.Id}} {{.Size}} bytes" >&2
