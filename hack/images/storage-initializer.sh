#!/usr/bin/env bash
# Build KServe's storage initializer image from PyPI's kserve-storage (KSERVE_STORAGE_VERSION) on
# the project's base image (BASE_IMAGE; hack/build-base-image.sh makes a local one), for machines
# that cannot pull kserve/storage-initializer. The wheels are fetched on the host, so the image
# build needs no network. Prints STORAGE_INITIALIZER_IMAGE=<tag>.
# Usage: BASE_IMAGE=mlops-platform/base:bookworm hack/images/storage-initializer.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=storage-initializer
lock_step storage-initializer
version=$(version_of KSERVE_STORAGE_VERSION)
base=${BASE_IMAGE:-mlops-platform/base:bookworm}
key=$(cat "$ROOT/docker/storage-initializer.Dockerfile" "$ROOT/docker/storage-initializer-entrypoint.py" |
  sha256sum | cut -c1-8)
tag="mlops-platform/storage-initializer:${version}-${key}"
start=$SECONDS
if have_image "$tag"; then
  stage_done storage-initializer "$start" cached
else
  must_build "storage initializer $tag"
  py=${PYTHON_BIN:-$(command -v python3.11 || command -v python3)}
  ctx="$CACHE/storage-initializer/$version"
  mkdir -p "$ctx/wheels"
  "$py" -m pip wheel --quiet --disable-pip-version-check --find-links "$ctx/wheels" -w "$ctx/wheels" \
    "kserve-storage==$version"
  cp "$ROOT/docker/storage-initializer-entrypoint.py" "$ctx/initializer-entrypoint.py"
  docker build --quiet -f "$ROOT/docker/storage-initializer.Dockerfile" --build-arg "BASE_IMAGE=$base" \
    -t "$tag" "$ctx" >/dev/null
  stage_done storage-initializer "$start"
fi
echo "STORAGE_INITIALIZER_IMAGE=$tag"
