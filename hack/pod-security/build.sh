#!/usr/bin/env bash
# Builds pod-security-check (main.go here) against the Pod Security Admission library of the
# Kubernetes release pinned in versions.mk (KUBERNETES_VERSION vX.Y.Z -> k8s.io/pod-security-admission
# v0.Y.Z) into a cache outside the repository:
#   ${POD_SECURITY_CACHE:-~/.cache/mlops-platform/pod-security}/<module version>/pod-security-check
# and prints the binary's path on stdout. A binary already there is reused; log lines go to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
k8s="$(sed -nE 's/^KUBERNETES_VERSION[[:space:]]*\??=[[:space:]]*([^[:space:]#]+).*/\1/p' "${root}/versions.mk" | head -n1)"
[[ -n "${k8s}" ]] || { echo "error: KUBERNETES_VERSION is not set in versions.mk" >&2; exit 2; }
module="v0.${k8s#v1.}"
grep -qE "k8s.io/pod-security-admission ${module}( |$)" "${here}/go.mod" ||
  { echo "error: ${here}/go.mod does not require k8s.io/pod-security-admission ${module}" >&2; exit 2; }

out="${POD_SECURITY_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mlops-platform/pod-security}/${module}"
if [[ -x "${out}/pod-security-check" && "${out}/pod-security-check" -nt "${here}/main.go" ]]; then
  echo "${out}/pod-security-check"
  exit 0
fi
command -v go >/dev/null || { echo "error: go not found; install Go >= 1.26" >&2; exit 2; }
mkdir -p "${out}"
exec 9>"${out}/.lock"
flock 9
echo "pod-security-check: building against k8s.io/pod-security-admission ${module}" >&2
(cd "${here}" && CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly" nice -n 10 go build \
  -o "${out}/.pod-security-check.tmp" .)
mv "${out}/.pod-security-check.tmp" "${out}/pod-security-check"
echo "${out}/pod-security-check"
