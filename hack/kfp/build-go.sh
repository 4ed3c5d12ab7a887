#!/usr/bin/env bash
# Build KFP's Go backend (from ../shared/upstream/kfp, extracted into ~/.cache) and Argo Workflows
# (from the Go module proxy) into $KFP_CACHE/bin-<versions>/. Cached: a binary that exists is kept.
# Every binary but the API server is static (CGO_ENABLED=0, netgo); the API server needs cgo (it
# links go-sqlite3, whose error type it uses even with MySQL), so it is built with cgo against this
# machine's glibc, which the Debian bookworm base image shares.
# Usage: hack/kfp/build-go.sh [all|kfp|argo]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BIN=$KFP_CACHE/bin-kfp$KFP_VERSION-argo$ARGO_WORKFLOWS_VERSION
mkdir -p "$BIN"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
GO_BUILD=(go build -trimpath -tags netgo -ldflags "-s -w")

# KFP's own binaries: name in $BIN -> package in the KFP module (static ones, then the API server).
declare -A KFP_BINARIES=(
  [persistence_agent]=./backend/src/agent/persistence
  [controller]=./backend/src/crd/controller/scheduledworkflow
  [cache_server]=./backend/src/cache
  [driver]=./backend/src/v2/cmd/driver
  [launcher-v2]=./backend/src/v2/cmd/launcher-v2
)

build_kfp() {
  extract_upstream
  local name
  for name in "${!KFP_BINARIES[@]}"; do
    [[ -x $BIN/$name ]] && continue
    (cd "$(kfp_src)" && $NICE "${GO_BUILD[@]}" -o "$BIN/$name" "${KFP_BINARIES[$name]}")
    log "built $name"
  done
  [[ -x $BIN/apiserver ]] ||
    (cd "$(kfp_src)" && CGO_ENABLED=1 $NICE go build -trimpath -ldflags "-s -w" -o "$BIN/apiserver" ./backend/src/apiserver)
  log "built apiserver (cgo)"
}

# Argo Workflows: build from a writable copy of its module. The module zip drops the symlink
# workflow/executor/osspecific/signal_linux.go (upstream it points at signal_darwin.go), so
# argoexec fails with "undefined: Setpgid" until that file is restored as a copy.
build_argo() {
  [[ -x $BIN/workflow-controller && -x $BIN/argoexec ]] && return 0
  local mod=github.com/argoproj/argo-workflows/v4@$ARGO_WORKFLOWS_VERSION dir src
  src=$(cd "$(mktemp -d)" && go mod download -json "$mod" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  dir=$KFP_CACHE/argo-workflows-$ARGO_WORKFLOWS_VERSION
  if [[ ! -d $dir ]]; then
    cp -r "$src" "$dir.tmp" && chmod -R u+w "$dir.tmp"
    local os=$dir.tmp/workflow/executor/osspecific
    [[ -e $os/signal_linux.go ]] || cp "$os/signal_darwin.go" "$os/signal_linux.go"
    mv "$dir.tmp" "$dir"
  fi
  (cd "$dir" && $NICE "${GO_BUILD[@]}" -o "$BIN/workflow-controller" ./cmd/workflow-controller)
  (cd "$dir" && $NICE "${GO_BUILD[@]}" -o "$BIN/argoexec" ./cmd/argoexec)
  log "built workflow-controller argoexec"
}

case ${1:-all} in
  all | kfp) stage "go: kfp backend" build_kfp ;;&
  all | argo) stage "go: argo $ARGO_WORKFLOWS_VERSION" build_argo ;;
  kfp) ;;
  *) echo "usage: $0 [all|kfp|argo]" >&2; exit 2 ;;
esac
ls -la "$BIN" >&2
print_stage_times
