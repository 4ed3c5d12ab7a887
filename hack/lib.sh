# Shared by the offline build scripts (hack/kind/*.sh, hack/images/*.sh); source it.
# - pinned NAME: a version from versions.mk (`NAME ?= value`), the one place for upstream versions.
# - CACHE: ~/.cache/mlops-platform (MLOPS_CACHE overrides); outputs live under it, keyed by version.
# - stage_done NAME START: print and record how long a stage took (logs/stages.tsv), so the
#   kind tests can print every stage's time at the end of a run.
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-platform}
mkdir -p "$CACHE/logs"

pinned() {
  local value
  value=$(sed -nE "s/^$1[[:space:]]*\??=[[:space:]]*([^[:space:]#]+).*/\1/p" "$ROOT/versions.mk" | head -n1)
  [[ -n $value ]] || { echo "error: $1 is not set in versions.mk" >&2; exit 2; }
  echo "$value"
}

# The caller's environment wins (the Makefile exports versions.mk; a user may override one).
version_of() { local v=${!1:-}; [[ -n $v ]] && echo "$v" || pinned "$1"; }

log() { echo "${LOG_PREFIX:-build}: $*" >&2; }

stage_done() { # stage_done NAME START_SECONDS [cached|built]
  local took=$((SECONDS - $2))
  log "stage $1: ${3:-built} in ${took} s"
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$1" "${3:-built}" "$took" >>"$CACHE/logs/stages.tsv"
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# go_module_copy MODULE@VERSION DEST: a writable copy of a module from the Go module proxy.
# `go install m@v` refuses modules with replace directives (Traefik, SeaweedFS); building in a copy
# uses the module's own go.mod and go.sum unchanged.
go_module_copy() {
  local dir
  [[ -f $2/go.mod ]] && return 0
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$1" | jq -r .Dir)
  [[ -d $dir ]] || { log "go mod download $1 failed"; return 1; }
  mkdir -p "$(dirname "$2")"
  rm -rf "$2.tmp" && cp -r "$dir" "$2.tmp" && chmod -R u+w "$2.tmp"
  # A `replace M => ./sub` names a nested module, which the module zip leaves out: put the nested
  # module, at the same version, where the replace expects it (prometheus-operator's pkg/apis, pkg/client).
  local mod=${1%@*} version=${1##*@} path sub nested
  while read -r path sub; do
    [[ -d $2.tmp/$sub ]] && continue
    nested=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$mod/$path@$version" | jq -r .Dir)
    [[ -d $nested ]] || { log "go mod download $mod/$path@$version failed"; return 1; }
    mkdir -p "$(dirname "$2.tmp/$sub")" && cp -r "$nested" "$2.tmp/$sub" && chmod -R u+w "$2.tmp/$sub"
  done < <(sed -nE "s#^[[:space:]]*(replace[[:space:]]+)?$mod/([^[:space:]]+)[[:space:]]+=>[[:space:]]+\./([^[:space:]]+)\s*\$#\2 \3#p" "$2.tmp/go.mod")
  mv "$2.tmp" "$2"
}

# static_image TAG ROOTFS_DIR [docker import --change ...]: import a directory as an image with
# the files a static binary needs (passwd/group for a non-root user, /tmp, the CA bundle).
static_image() {
  local tag=$1 dir=$2
  shift 2
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp"
  chmod 1777 "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/" 2>/dev/null || true
  tar -C "$dir" -c . | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' "$@" - "$tag" >/dev/null
}

# must_build WHAT: called where a step is about to build. With CHECK_ONLY=1 (hack/kind/build.sh
# --check) nothing is built: the step reports what is missing and exits 10.
must_build() {
  if [[ ${CHECK_ONLY:-} == 1 ]]; then
    log "not built yet: $1"
    exit 10
  fi
}

# lock_step NAME: one run of a build step at a time (a test session and `make offline-build` may
# overlap); held until the script exits.
lock_step() {
  [[ ${CHECK_ONLY:-} == 1 ]] && return 0 # a check only looks
  exec {_step_lock}>"$CACHE/logs/.$1.lock"
  flock "$_step_lock"
}
