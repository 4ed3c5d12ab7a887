#!/usr/bin/env bash
# Show what the platform runs on the current kubectl context and how to reach it.
set -uo pipefail
# The project's namespace, as manifests/base declares it (not a setting; see hack/deploy.sh).
PROJECT_NAMESPACE=mlops
GATEWAY_NODE_PORT=${GATEWAY_NODE_PORT:-31080}

if ! kubectl cluster-info >/dev/null 2>&1; then
  echo "no cluster reachable from kubectl context '$(kubectl config current-context 2>/dev/null)'; run: make cluster deploy" >&2
  exit 1
fi
echo "context: $(kubectl config current-context)"
for ns in traefik kserve kubeflow monitoring "$PROJECT_NAMESPACE"; do
  printf '\n\033[1m%s\033[0m\n' "$ns"
  kubectl get pods -n "$ns" --no-headers 2>/dev/null \
    | awk '{printf "  %-60s %-8s %s\n", $1, $2, $3}' || echo "  (not installed)"
done
printf '\n\033[1mInferenceServices\033[0m\n'
kubectl get inferenceservices -n "$PROJECT_NAMESPACE" 2>/dev/null || echo "  (none; make run deploys one)"
cat <<TXT

Reach the services (each command runs in its own terminal):
  KFP UI and API   kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8888:80     -> http://localhost:8888
                   kubectl port-forward -n kubeflow svc/ml-pipeline 8887:8888      -> KFP API for make run
  Prometheus       kubectl port-forward -n monitoring svc/prometheus-operated 9090 -> http://localhost:9090
TXT
# KServe writes each model's host into its status (domainTemplate of inferenceservice-config).
kubectl get inferenceservices -n "$PROJECT_NAMESPACE" -o jsonpath='{range .items[*]}{.metadata.name} {.status.url}{"\n"}{end}' 2>/dev/null |
  while read -r name url; do
    [[ -n $url ]] || continue
    echo "  Model $name   curl -H 'Host: ${url#*://}' http://localhost:$GATEWAY_NODE_PORT/v1/models/$name"
  done
