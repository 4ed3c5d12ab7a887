#!/usr/bin/env bash
# Build Traefik (TRAEFIK_VERSION), the cluster's Gateway API implementation, from its Go module, for
# machines that cannot pull the traefik image. Traefik is pure Go: it needs no Envoy, which no
# registry or package here serves. Built in a copy of the module (its go.mod has replace
# directives, which `go install` refuses). Prints TRAEFIK_IMAGE=<tag>.
# Usage: hack/images/traefik.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=traefik
lock_step traefik
version=$(version_of TRAEFIK_VERSION)
tag="mlops-platform/traefik:$version"
start=$SECONDS
if have_image "$tag"; then
  stage_done traefik "$start" cached
else
  must_build "Traefik $tag"
  bin="$CACHE/traefik/$version"
  if [[ ! -x $bin/traefik ]]; then
    src="$CACHE/upstream/traefik-$version"
    go_module_copy "github.com/traefik/traefik/v3@$version" "$src"
    log "go build ./cmd/traefik (about 10 minutes on 2 cores)"
    (cd "$src" && CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false -mod=mod" nice -n 10 go build \
      -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" -o "$bin/traefik.tmp" ./cmd/traefik)
    mv "$bin/traefik.tmp" "$bin/traefik"
  fi
  dir=$(mktemp -d /tmp/traefik-img.XXXXXX)
  install -D -m 0755 "$bin/traefik" "$dir/usr/local/bin/traefik"
  static_image "$tag" "$dir" --change 'USER 65532:65532' --change 'ENTRYPOINT ["/usr/local/bin/traefik"]'
  rm -rf "$dir"
  stage_done traefik "$start"
fi
echo "TRAEFIK_IMAGE=$tag"
