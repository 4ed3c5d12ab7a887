#!/usr/bin/env bash
# Build KServe's controller image (and the kube-rbac-proxy sidecar its manifests name) from source,
# for machines that reach no container registry; a laptop pulls the release images instead.
# The source is ../shared/upstream/kserve/kserve-src.tar.gz (KSERVE_SOURCE_COMMIT; the Go module
# proxy refuses github.com/kserve/kserve), extracted into the cache at build time, never copied
# into this repository. Prints KEY=VALUE lines: KSERVE_SOURCE_DIR (its config/ is what
# hack/deploy.sh installs) and the image tags, for hack/deploy.sh's environment.
# Usage: hack/images/kserve.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=kserve
lock_step kserve
commit=$(version_of KSERVE_SOURCE_COMMIT)
tarball=${KSERVE_SOURCE_TARBALL:-$ROOT/../shared/upstream/kserve/kserve-src.tar.gz}
[[ -f $tarball ]] || tarball=/work/shared/upstream/kserve/kserve-src.tar.gz
src="$CACHE/upstream/kserve-${commit:0:12}"
controller_tag="mlops-platform/kserve-controller:${commit:0:12}"

start=$SECONDS
have_image "$controller_tag" || must_build "KServe controller $controller_tag"
if [[ ! -f $src/go.mod ]]; then
  [[ -f $tarball ]] || { log "no KServe source tarball at $tarball"; exit 3; }
  grep -q "$commit" "$(dirname "$tarball")/README.md" ||
    { log "$(dirname "$tarball")/README.md does not name commit $commit (KSERVE_SOURCE_COMMIT)"; exit 2; }
  rm -rf "$src.tmp" && mkdir -p "$src.tmp" && tar -xzf "$tarball" -C "$src.tmp" && mv "$src.tmp" "$src"
fi
if have_image "$controller_tag"; then
  stage_done kserve-controller "$start" cached
else
  log "go build ./cmd/manager (minutes on a small machine)"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" nice -n 10 go build -ldflags '-s -w' -o "$src/bin/manager" ./cmd/manager)
  dir=$(mktemp -d /tmp/kserve-img.XXXXXX)
  install -D -m 0755 "$src/bin/manager" "$dir/manager"
  static_image "$controller_tag" "$dir" --change 'USER 65532:65532' --change 'ENTRYPOINT ["/manager"]'
  rm -rf "$dir"
  stage_done kserve-controller "$start"
fi

# The sidecar the manifests name (config/default/manager_auth_proxy_patch.yaml), same version.
start=$SECONDS
proxy_ref=$(sed -nE 's/^\s*image:\s*(\S*kube-rbac-proxy:\S+)\s*$/\1/p' "$src/config/default/manager_auth_proxy_patch.yaml" | head -n1)
proxy_version=${proxy_ref##*:}
proxy_tag="mlops-platform/kube-rbac-proxy:$proxy_version"
if have_image "$proxy_tag"; then
  stage_done kube-rbac-proxy "$start" cached
else
  must_build "kube-rbac-proxy $proxy_tag"
  bin="$CACHE/kube-rbac-proxy/$proxy_version"
  if [[ ! -x $bin/kube-rbac-proxy ]]; then
    go_module_copy "github.com/brancz/kube-rbac-proxy@$proxy_version" "$CACHE/upstream/kube-rbac-proxy-$proxy_version"
    (cd "$CACHE/upstream/kube-rbac-proxy-$proxy_version" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=mod" \
      nice -n 10 go build -ldflags '-s -w' -o "$bin/kube-rbac-proxy" ./cmd/kube-rbac-proxy)
  fi
  dir=$(mktemp -d /tmp/krp-img.XXXXXX)
  install -D -m 0755 "$bin/kube-rbac-proxy" "$dir/usr/local/bin/kube-rbac-proxy"
  static_image "$proxy_tag" "$dir" --change 'USER 65532:65532' --change 'ENTRYPOINT ["/usr/local/bin/kube-rbac-proxy"]'
  rm -rf "$dir"
  stage_done kube-rbac-proxy "$start"
fi
echo "KSERVE_SOURCE_DIR=$src"
echo "KSERVE_CONTROLLER_IMAGE=$controller_tag"
echo "KUBE_RBAC_PROXY_IMAGE=$proxy_tag"
