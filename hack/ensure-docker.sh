#!/usr/bin/env bash
# Make a Docker engine available to the tests: install docker.io (and debootstrap, for the base
# image) from Debian when missing, start dockerd in the background when it is not running, and wait
# for `docker info`. Idempotent; needs root for the install and the daemon.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }

if docker info >/dev/null 2>&1; then
  log "Docker engine already running"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  log "not root: cannot install or start dockerd"
  exit 3
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  log "installing ${missing[*]} from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" iptables ca-certificates >/dev/null
fi

DOCKER_LOG=${DOCKER_LOG:-/var/log/mlops-dockerd.log}
if ! pgrep -x dockerd >/dev/null; then
  log "starting dockerd (log: $DOCKER_LOG)"
  # setsid: the daemon outlives the test session that started it, like a system service would.
  setsid nohup dockerd >"$DOCKER_LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine ready"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60s; last lines of $DOCKER_LOG:"
tail -n 20 "$DOCKER_LOG" >&2 || true
exit 1
