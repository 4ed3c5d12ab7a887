#!/usr/bin/env bash
# Builds kube-apiserver and etcd of the versions pinned in versions.mk from the official Go modules
# (wrapper modules next to this script) into a cache outside the repository:
#   ${KUBE_ASSETS_CACHE:-~/.cache/mlops-platform/kube-assets}/<KUBERNETES_VERSION>/{kube-apiserver,etcd}
# and prints that directory on stdout. Binaries already there are reused. Log lines go to stderr.
# Usage: hack/kube-apiserver/build.sh [--print-dir|--node]
#   --print-dir: print the directory, build nothing
#   --node: also build what a kind node runs (kubelet, kubeadm, kubectl, kube-proxy, kube-scheduler,
#           kube-controller-manager; hack/kind/node-image.sh). Same wrapper module, same Go build
#           cache (GOCACHE), so the packages the binaries share are compiled once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"

# versions.mk is the one place for upstream versions; read `NAME ?= value` lines from it.
pinned() {
  local value
  value="$(sed -nE "s/^$1[[:space:]]*\??=[[:space:]]*([^[:space:]#]+).*/\1/p" "${root}/versions.mk" | head -n1)"
  [[ -n "${value}" ]] || { echo "error: $1 is not set in versions.mk" >&2; exit 2; }
  echo "${value}"
}
kube_version="$(pinned KUBERNETES_VERSION)" # e.g. v1.37.2
etcd_version="$(pinned ETCD_VERSION)"       # e.g. v3.7.3

cache_root="${KUBE_ASSETS_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/mlops-platform/kube-assets}"
out="${cache_root}/${kube_version}"
node=false
[[ "${1:-}" == "--node" ]] && node=true
if [[ "${1:-}" == "--print-dir" ]]; then
  echo "${out}"
  exit 0
fi

# The wrapper modules must pin what versions.mk says, or the cache directory would lie.
minor="${kube_version#v1.}"
grep -qE "^[[:space:]]*(require )?k8s.io/kubernetes ${kube_version}( |$)" "${here}/go.mod" ||
  { echo "error: ${here}/go.mod does not require k8s.io/kubernetes ${kube_version} (versions.mk)" >&2; exit 2; }
if grep -E '=> k8s.io/' "${here}/go.mod" | grep -vqE "=> k8s.io/[a-z-]+ v0\.${minor}$"; then
  echo "error: a k8s.io staging module in ${here}/go.mod is not pinned to v0.${minor}" >&2
  exit 2
fi
grep -qE "^[[:space:]]*(require )?go.etcd.io/etcd/server/v3 ${etcd_version}( |$)" "${here}/etcd/go.mod" ||
  { echo "error: ${here}/etcd/go.mod does not require etcd server ${etcd_version} (versions.mk)" >&2; exit 2; }

command -v go >/dev/null || { echo "error: go not found; install Go >= 1.26 or set KUBEBUILDER_ASSETS" >&2; exit 2; }
mkdir -p "${out}"
# One build of each binary at a time (pytest workers, `make apiserver` and the node image may
# race); a lock per binary, so a caller that needs only kube-apiserver does not wait for the rest.

# -buildvcs=false: the wrapper modules sit in this git checkout; stamping its state is meaningless.
export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false"

build() { # build <module dir> <package> <binary name> <ldflags> <what --version prints> [version flag]
  local dir="$1" pkg="$2" name="$3" ldflags="$4" expect="$5" vflag="${6:---version}"
  local lock
  exec {lock}>"${out}/.${name}.lock"
  flock "${lock}"
  if [[ -x "${out}/${name}" ]]; then
    # Not `--version | grep -q`: grep leaving early would SIGPIPE the binary and fail pipefail.
    # shellcheck disable=SC2086 # vflag may be two words ("version --client")
    if [[ "$("${out}/${name}" ${vflag} 2>/dev/null || true)" == *"${expect}"* ]]; then
      echo "kube-assets: ${out}/${name} is cached" >&2
      exec {lock}>&-
      return
    fi
    echo "kube-assets: ${out}/${name} is not ${expect} (versions.mk changed); rebuilding" >&2
  fi
  echo "kube-assets: building ${name} (${pkg}) into ${out}; this takes a while on a small machine" >&2
  local start=${SECONDS}
  (cd "${dir}" && nice -n 10 go build -ldflags "-s -w ${ldflags}" -o "${out}/.${name}.tmp" "${pkg}")
  mv "${out}/.${name}.tmp" "${out}/${name}" # atomic: a half-written binary is never "cached"
  echo "kube-assets: built ${name} in $((SECONDS - start)) s" >&2
  exec {lock}>&-
}

version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X ${pkg}.gitVersion=${kube_version} -X ${pkg}.gitMajor=1"
  version_flags+=" -X ${pkg}.gitMinor=${minor%%.*} -X ${pkg}.gitTreeState=clean"
done
build "${here}" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "${version_flags}" \
  "Kubernetes ${kube_version}"
build "${here}/etcd" go.etcd.io/etcd/server/v3 etcd \
  "-X go.etcd.io/etcd/api/v3/version.GitSHA=${etcd_version}" "etcd Version: ${etcd_version#v}"

if ${node}; then
  for name in kubelet kube-proxy kube-scheduler kube-controller-manager; do
    build "${here}" "k8s.io/kubernetes/cmd/${name}" "${name}" "${version_flags}" "Kubernetes ${kube_version}"
  done
  build "${here}" k8s.io/kubernetes/cmd/kubeadm kubeadm "${version_flags}" "${kube_version}" "version -o short"
  build "${here}" k8s.io/kubernetes/cmd/kubectl kubectl "${version_flags}" "${kube_version}" "version --client"
fi
echo "kube-assets: done in ${SECONDS} s" >&2
echo "${out}"
