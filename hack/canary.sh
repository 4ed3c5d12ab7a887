#!/usr/bin/env bash
# `make canary VERSION=N`: roll version N of the model out on the cluster and analyse it until the
# analysis promotes or rolls it back. No manual step first:
#   - Prometheus is reached through a port-forward this script opens (a free local port) and
#     closes when it ends;
#   - the version is the cluster registry's (CLUSTER_REGISTRY_URI, the store the pipeline's steps
#     write to): a version number resolves to its storage URI without reading the store;
#   - when the pipeline's deploy step already made N the canary, `canary start` says so and the
#     analysis resumes it.
# The champion is not changed here: on the cluster the pipeline's gate decides it (and
# `mlops registry rollback` is how a user moves it back).
# Usage: hack/canary.sh VERSION   (MLOPS: the mlops executable; MODEL: default the CLI's;
#   POLICY: a rollout policy file, default the built-in policy)
set -euo pipefail
shopt -s inherit_errexit

VERSION=${1:-}
MLOPS=${MLOPS:-mlops}
MODEL=${MODEL:-}
POLICY=${POLICY:-}
CLUSTER_REGISTRY_URI=${CLUSTER_REGISTRY_URI:?set by the Makefile}
# The Prometheus the project deploys (manifests/base/monitoring): the operator's governing Service.
PROMETHEUS_SERVICE=monitoring/prometheus-operated
PROMETHEUS_PORT=9090

if [[ ! $VERSION =~ ^[0-9]+$ ]]; then
  echo "usage: make canary VERSION=<registered version number> (got '${VERSION}')" >&2
  exit 2
fi
command -v kubectl >/dev/null || { echo "error: make canary needs kubectl: not found on PATH" >&2; exit 2; }
if ! kubectl version --request-timeout=10s >/dev/null 2>&1; then
  echo "error: no cluster reachable from kubectl context '$(kubectl config current-context 2>/dev/null)'; run: make cluster deploy" >&2
  exit 1
fi

log=$(mktemp)
kubectl port-forward -n "${PROMETHEUS_SERVICE%/*}" "svc/${PROMETHEUS_SERVICE#*/}" ":$PROMETHEUS_PORT" >"$log" 2>&1 &
forward=$!
trap 'kill "$forward" 2>/dev/null || true; rm -f "$log"' EXIT
# kubectl prints "Forwarding from 127.0.0.1:PORT -> 9090" once the local port listens.
port=""
for _ in $(seq 1 50); do
  port=$(sed -nE 's/^Forwarding from 127\.0\.0\.1:([0-9]+) .*/\1/p' "$log" | head -n1)
  [[ -n $port ]] && break
  kill -0 "$forward" 2>/dev/null || break
  sleep 0.2
done
if [[ -z $port ]]; then
  echo "error: cannot port-forward to $PROMETHEUS_SERVICE: $(tr '\n' ' ' <"$log")(is \`make deploy\` done?)" >&2
  exit 1
fi
echo "Prometheus: $PROMETHEUS_SERVICE on http://127.0.0.1:$port (port-forward, closed at the end)"

common=(--target kubernetes --registry "$CLUSTER_REGISTRY_URI" ${MODEL:+--model "$MODEL"})
"$MLOPS" canary start --version "$VERSION" "${common[@]}"
"$MLOPS" canary run "${common[@]}" ${POLICY:+--policy "$POLICY"} --prometheus "http://127.0.0.1:$port" --no-update-champion
