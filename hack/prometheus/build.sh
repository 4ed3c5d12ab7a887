#!/usr/bin/env bash
# Builds the Prometheus server pinned in versions.mk (PROMETHEUS_GO_MODULE) from its official Go
# module (the wrapper module next to this script) into a cache outside the repository:
#   ${PROMETHEUS_CACHE:-~/.cache/mlops-platform/prometheus}/<PROMETHEUS_GO_MODULE>/prometheus
# and prints the binary's path on stdout. A binary already there is reused; log lines go to stderr.
# Service discovery plugins are left out (-tags remove_all_sd): the tests use static targets, and
# some plugins' modules are not on the Go module proxy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
module="$(sed -nE 's/^PROMETHEUS_GO_MODULE[[:space:]]*\??=[[:space:]]*([^[:space:]#]+).*/\1/p' "${root}/versions.mk" | head -n1)"
[[ -n "${module}" ]] || { echo "error: PROMETHEUS_GO_MODULE is not set in versions.mk" >&2; exit 2; }
grep -qE "github.com/prometheus/prometheus ${module}( |$)" "${here}/go.mod" ||
  { echo "error: ${here}/go.mod does not require github.com/prometheus/prometheus ${module}" >&2; exit 2; }

out="${PROMETHEUS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mlops-platform/prometheus}/${module}"
if [[ -x "${out}/prometheus" ]]; then
  echo "${out}/prometheus"
  exit 0
fi
command -v go >/dev/null || { echo "error: go not found; install Go >= 1.26" >&2; exit 2; }
mkdir -p "${out}"
exec 9>"${out}/.lock"
flock 9
if [[ ! -x "${out}/prometheus" ]]; then
  echo "prometheus: building ${module} into ${out}; this takes a few minutes on a small machine" >&2
  start=${SECONDS}
  (cd "${here}" && CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" nice -n 10 go build -tags remove_all_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${module}" \
    -o "${out}/.prometheus.tmp" github.com/prometheus/prometheus/cmd/prometheus)
  mv "${out}/.prometheus.tmp" "${out}/prometheus"
  echo "prometheus: built in $((SECONDS - start)) s" >&2
fi
echo "${out}/prometheus"
