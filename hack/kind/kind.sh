#!/usr/bin/env bash
# Install kind (KIND_VERSION) with `go install` into the cache and print the binary's path.
# kind >= v0.33 is needed for Kubernetes 1.37 (older kind writes a kubeadm v1beta3 config that
# kubeadm 1.37 refuses). Usage: hack/kind/kind.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=kind
lock_step kind
version=$(version_of KIND_VERSION)
bin="$CACHE/kind/$version"
start=$SECONDS
if [[ -x $bin/kind ]] && [[ $("$bin/kind" version) == "kind $version "* ]]; then
  stage_done kind "$start" cached
else
  must_build "kind $version"
  GOBIN="$bin" CGO_ENABLED=0 GOFLAGS="-trimpath" nice -n 10 go install "sigs.k8s.io/kind@$version"
  stage_done kind "$start"
fi
echo "$bin/kind"
