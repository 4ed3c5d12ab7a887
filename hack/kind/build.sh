#!/usr/bin/env bash
# The offline build path: everything `make cluster deploy` would pull from a registry, built here
# from Debian packages, Go modules, PyPI and ../shared/upstream, each step cached under
# ~/.cache/mlops-platform by version. Writes the environment that switches `make cluster deploy`
# to these local builds (the same code path as a laptop, which pulls the release images) to
#   ~/.cache/mlops-platform/kind/local.env      (use: make cluster deploy LOCAL_ENV=<that file>)
# and prints its path, then each stage's time.
# Usage: hack/kind/build.sh [--check]   (--check: build nothing; exit 10 if a step is not built yet)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
LOG_PREFIX=offline-build
total=$SECONDS
[[ ${1:-} == --check ]] && export CHECK_ONLY=1
env_file="$CACHE/kind/local.env"
mkdir -p "$CACHE/kind"
# The stages log's length before this run (none yet on a new machine: 0, without the shell's
# "No such file" a failed redirection prints before `2>/dev/null` applies).
run_mark=0
[[ -f "$CACHE/logs/stages.tsv" ]] && run_mark=$(wc -l <"$CACHE/logs/stages.tsv")

start=$SECONDS
bash "$ROOT/hack/ensure-docker.sh"
stage_done docker "$start"
vars=()
collect() { # collect CMD...: run a step; its KEY=VALUE lines join the environment
  local out
  out=$("$@") || { local rc=$?; log "failed: $*"; exit "$rc"; }
  mapfile -t -O "${#vars[@]}" vars <<<"$out"
}
collect_one() { # collect_one KEY CMD...: a step that prints one value
  local key=$1 out
  shift
  out=$("$@") || { local rc=$?; log "failed: $*"; exit "$rc"; }
  vars+=("$key=${out##*$'\n'}") # its last line: a step's value, whatever it logged before
}
collect_one KIND bash "$ROOT/hack/kind/kind.sh"
collect_one KIND_NODE_IMAGE bash "$ROOT/hack/kind/node-image.sh"
collect bash "$ROOT/hack/images/kserve.sh"
collect bash "$ROOT/hack/images/traefik.sh"
collect bash "$ROOT/hack/images/seaweedfs.sh"
collect bash "$ROOT/hack/images/prometheus.sh"
start=$SECONDS
base=${BASE_IMAGE_LOCAL:-mlops-platform/base:bookworm}
bash "$ROOT/hack/build-base-image.sh" "$base" || exit $?
stage_done base-image "$start"
collect env BASE_IMAGE="$base" bash "$ROOT/hack/images/storage-initializer.sh"

# Upstream manifests, from the same sources as the images (a laptop reads the release URLs).
kserve_dir=$(printf '%s\n' "${vars[@]}" | sed -n 's/^KSERVE_SOURCE_DIR=//p')
gateway_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$(version_of GATEWAY_API_VERSION)" | jq -r .Dir)
traefik_dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$(version_of TRAEFIK_VERSION)" | jq -r .Dir)
kfp_version=$(version_of KFP_VERSION)
kfp_dir="$CACHE/upstream/kfp-$kfp_version"
if [[ ! -d $kfp_dir/manifests/kustomize ]]; then
  kfp_tar=${KFP_SOURCE_TARBALL:-/work/shared/upstream/kfp/kfp-src.tar.gz}
  grep -q "tag \`$kfp_version\`" "$(dirname "$kfp_tar")/README.md" || { log "$kfp_tar is not KFP $kfp_version"; exit 2; }
  rm -rf "$kfp_dir.tmp" && mkdir -p "$kfp_dir.tmp" && tar -xzf "$kfp_tar" -C "$kfp_dir.tmp" ./manifests && mv "$kfp_dir.tmp" "$kfp_dir"
fi
vars+=("KSERVE_MANIFESTS=$kserve_dir/config/overlays/standalone/kserve")
vars+=("GATEWAY_API_CRDS=$gateway_dir/config/crd")
vars+=("TRAEFIK_RBAC=$traefik_dir/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml")
vars+=("KFP_MANIFESTS=$kfp_dir/manifests/kustomize")
vars+=("BASE_IMAGE=$base")
# The images `hack/cluster.sh create` loads into the node (no registry to pull them from).
images=$(printf '%s\n' "${vars[@]}" | sed -n 's/^[A-Z_]*_IMAGE=//p' | grep -v "^$base$" | grep -v '^mlops-platform/kind-node' | tr '\n' ' ')
vars+=("LOCAL_IMAGES=${images% }")
printf '%s\n' "${vars[@]}" | grep -v '^KSERVE_SOURCE_DIR=' >"$env_file.tmp"
mv "$env_file.tmp" "$env_file"
log "offline build done in $((SECONDS - total)) s; environment: $env_file"
tail -n +"$((run_mark + 1))" "$CACHE/logs/stages.tsv" | awk -F'\t' '{printf "  %-22s %-7s %5d s\n", $2, $3, $4}' >&2
echo "$env_file"
