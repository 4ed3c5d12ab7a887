#!/usr/bin/env bash
# Make a Docker engine available to the tests: install docker.io (and debootstrap, for the base
# image) from Debian when missing, start dockerd in the background when it is not running, and wait
# for `docker info`. Idempotent; needs root for the install and the daemon.
#
# Machines whose capability bounding set lacks CAP_SYS_RESOURCE cannot run `--privileged`
# containers (kind's nodes): runc fails with "unable to apply caps". There dockerd is started with
# a runc wrapper as its default runtime that drops that one capability from each container's OCI
# spec (`create`/`run`: <bundle>/config.json; `exec`: the --process file) before runc sees it.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }
start=$SECONDS
cache=${MLOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-platform}
RUNTIME_NAME=mlops-runc

# cap_sys_resource is bit 24 of the bounding set (linux/capability.h).
lacks_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  (((0x$bnd >> 24 & 1) == 0))
}

# write_wrapper PATH: the runc wrapper (needs jq).
write_wrapper() {
  mkdir -p "$(dirname "$1")"
  cat >"$1.tmp" <<'WRAPPER'
#!/bin/bash
# Written by hack/ensure-docker.sh: drop CAP_SYS_RESOURCE from the OCI spec, then exec runc.
set -e
strip() { # strip FILE JQ_PATH: remove the capability from every set under JQ_PATH
  [[ -f $1 ]] || return 0
  jq "if $2.capabilities then $2.capabilities |= with_entries(.value |= map(select(. != \"CAP_SYS_RESOURCE\"))) else . end" \
    "$1" >"$1.nosysres" && mv "$1.nosysres" "$1"
}
bundle=. process="" cmd=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --bundle | -b) bundle=${args[i + 1]} ;;
    --bundle=*) bundle=${args[i]#--bundle=} ;;
    --process | -p) process=${args[i + 1]} ;;
    --process=*) process=${args[i]#--process=} ;;
    create | run | exec) [[ -z $cmd ]] && cmd=${args[i]} ;;
  esac
done
case $cmd in
  create | run) strip "$bundle/config.json" .process ;;
  exec) [[ -n $process ]] && strip "$process" "" ;;
esac
exec runc "$@"
WRAPPER
  chmod +x "$1.tmp" && mv "$1.tmp" "$1"
}

wrapper="$cache/docker/runc-without-sys-resource"
# Refreshed even while dockerd runs: the daemon execs the file per container operation, so a fixed
# wrapper takes effect without a restart.
[[ -f $wrapper ]] && write_wrapper "$wrapper"

if docker info >/dev/null 2>&1; then
  log "Docker engine already running (default runtime: $(docker info --format '{{.DefaultRuntime}}'))"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  log "not root: cannot install or start dockerd"
  exit 3
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables ca-certificates >/dev/null
fi

runtime_args=()
if lacks_sys_resource; then
  write_wrapper "$wrapper"
  runtime_args=(--add-runtime "$RUNTIME_NAME=$wrapper" --default-runtime "$RUNTIME_NAME")
  log "CAP_SYS_RESOURCE is not in the bounding set: default runtime $RUNTIME_NAME ($wrapper)"
fi

DOCKER_LOG=${DOCKER_LOG:-/var/log/mlops-dockerd.log}
if ! pgrep -x dockerd >/dev/null; then
  log "starting dockerd (log: $DOCKER_LOG)"
  # setsid: the daemon outlives the test session that started it, like a system service would.
  setsid nohup dockerd "${runtime_args[@]}" >"$DOCKER_LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine ready in $((SECONDS - start)) s"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60s; last lines of $DOCKER_LOG:"
tail -n 20 "$DOCKER_LOG" >&2 || true
exit 1
