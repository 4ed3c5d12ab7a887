#!/usr/bin/env bash
# Builds kubeconform, the manifest linter `make lint` runs (hack/kubeconform/lint.sh), at the
# version pinned in versions.mk (KUBECONFORM_VERSION), from its Go module on the module proxy,
# into a cache outside the repository:
#   ${KUBECONFORM_CACHE:-~/.cache/mlops-platform/kubeconform}/<KUBECONFORM_VERSION>/kubeconform
# and prints the binary's path on stdout. A binary already there is reused; log lines go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
version="$(sed -nE 's/^KUBECONFORM_VERSION[[:space:]]*\??=[[:space:]]*([^[:space:]#]+).*/\1/p' "${root}/versions.mk" | head -n1)"
[[ -n "${version}" ]] || { echo "error: KUBECONFORM_VERSION is not set in versions.mk" >&2; exit 2; }

out="${KUBECONFORM_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mlops-platform/kubeconform}/${version}"
if [[ -x "${out}/kubeconform" ]]; then
  echo "${out}/kubeconform"
  exit 0
fi
command -v go >/dev/null || { echo "error: go not found; install Go >= 1.26 (kubeconform is built from its module)" >&2; exit 2; }
mkdir -p "${out}"
exec 9>"${out}/.lock"
flock 9
if [[ ! -x "${out}/kubeconform" ]]; then
  echo "kubeconform: building ${version} into ${out}" >&2
  start=${SECONDS}
  CGO_ENABLED=0 GOFLAGS="-trimpath" GOBIN="${out}/.bin" nice -n 10 \
    go install "github.com/yannh/kubeconform/cmd/kubeconform@${version}"
  mv "${out}/.bin/kubeconform" "${out}/kubeconform"
  rmdir "${out}/.bin"
  echo "kubeconform: built in $((SECONDS - start)) s" >&2
fi
echo "${out}/kubeconform"
