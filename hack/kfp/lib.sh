# Shared by hack/kfp/*.sh (sourced, not run). Versions come from versions.mk through the Makefile;
# the defaults here only let a script run on its own.
KFP_VERSION=${KFP_VERSION:-2.17.0}
ARGO_WORKFLOWS_VERSION=${ARGO_WORKFLOWS_VERSION:-v4.0.5}
ML_METADATA_VERSION=${ML_METADATA_VERSION:-1.17.1}
KFP_UPSTREAM=${KFP_UPSTREAM:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared/upstream/kfp}
[[ -d $KFP_UPSTREAM ]] || KFP_UPSTREAM=/work/shared/upstream/kfp
KFP_CACHE=${KFP_CACHE:-$HOME/.cache/mlops-kfp}
# Every local image is tagged <prefix>/<name>:<upstream version>; install.sh substitutes these.
KFP_IMAGE_PREFIX=${KFP_IMAGE_PREFIX:-mlops-kfp}
KFP_BASE_IMAGE=${KFP_BASE_IMAGE:-mlops-platform/base:bookworm}
NICE=${NICE:-nice -n 15}

log() { echo "kfp: $*" >&2; }

# stage NAME CMD...: run one build stage and record its wall time for the summary.
declare -a KFP_STAGE_TIMES=()
stage() {
  local name=$1 t0=$SECONDS
  shift
  log "stage $name"
  "$@"
  KFP_STAGE_TIMES+=("$(printf '%-24s %5ss' "$name" $((SECONDS - t0)))")
}
print_stage_times() {
  local line
  echo "kfp: stage times" >&2
  for line in "${KFP_STAGE_TIMES[@]}"; do echo "  $line" >&2; done
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# The upstream sources, extracted once per version into the cache (never into the project).
kfp_src() { echo "$KFP_CACHE/src-$KFP_VERSION"; }
extract_upstream() {
  local src
  src=$(kfp_src)
  if [[ ! -f $src/.extracted ]]; then
    rm -rf "$src" && mkdir -p "$src"
    tar -xzf "$KFP_UPSTREAM/kfp-src.tar.gz" -C "$src"
    touch "$src/.extracted"
  fi
}
