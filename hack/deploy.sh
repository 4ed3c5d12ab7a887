#!/usr/bin/env bash
# Install the platform onto the current kubectl context, in order, waiting for each piece:
#   cert-manager -> Knative Serving + Kourier -> KServe (serverless) -> Kubeflow Pipelines
#   (standalone, platform-agnostic) -> Prometheus operator -> the project's manifests.
# Every version comes from versions.mk (through the Makefile); upstream YAML is applied from the
# upstream release URL, never copied into this repository.
# Usage: hack/deploy.sh [all|cert-manager|knative|kserve|kfp|prometheus|project]
set -euo pipefail

: "${CERT_MANAGER_VERSION:?} ${KNATIVE_SERVING_VERSION:?} ${NET_KOURIER_VERSION:?}"
: "${KSERVE_VERSION:?} ${KFP_VERSION:?} ${PROMETHEUS_OPERATOR_VERSION:?}"
OVERLAY=${OVERLAY:-manifests/overlays/dev}
NAMESPACE=${NAMESPACE:-mlops}
TIMEOUT=${TIMEOUT:-600s}
KOURIER_NODE_PORT=${KOURIER_NODE_PORT:-31080}
GH=https://github.com

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# wait_ready WHAT NAMESPACE KIND [NAME...]: wait for Deployments/StatefulSets to roll out (or, for
# KIND=crd, CRDs to be established); on timeout, name what is not ready and show its pods.
wait_ready() {
  local what=$1 ns=$2 kind=$3
  shift 3
  local name
  for name in "$@"; do
    if [[ $kind == crd ]]; then
      kubectl wait --for condition=established --timeout="$TIMEOUT" "crd/$name" >/dev/null && continue
    elif kubectl rollout status -n "$ns" "$kind/$name" --timeout="$TIMEOUT" >/dev/null; then
      continue
    fi
    echo "error: $what is not ready: $kind/$name in namespace $ns after $TIMEOUT" >&2
    kubectl get pods -n "$ns" -o wide >&2 || true
    kubectl get events -n "$ns" --sort-by=.lastTimestamp 2>/dev/null | tail -n 15 >&2 || true
    exit 1
  done
  echo "ready: $what"
}

# deployments_of NAMESPACE: every Deployment in a namespace (upstream releases rename theirs).
deployments_of() { kubectl get deployments -n "$1" -o name | sed 's|.*/||'; }

install_cert_manager() {
  step "cert-manager $CERT_MANAGER_VERSION"
  kubectl apply --server-side -f "$GH/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
  wait_ready cert-manager cert-manager deployment cert-manager cert-manager-cainjector cert-manager-webhook
}

install_knative() {
  step "Knative Serving $KNATIVE_SERVING_VERSION + Kourier $NET_KOURIER_VERSION"
  kubectl apply --server-side -f "$GH/knative/serving/releases/download/$KNATIVE_SERVING_VERSION/serving-crds.yaml"
  wait_ready "Knative CRDs" "" crd services.serving.knative.dev
  kubectl apply --server-side -f "$GH/knative/serving/releases/download/$KNATIVE_SERVING_VERSION/serving-core.yaml"
  kubectl apply --server-side -f "$GH/knative/net-kourier/releases/download/$NET_KOURIER_VERSION/kourier.yaml"
  kubectl patch configmap/config-network -n knative-serving --type merge \
    -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  # Model hosts are <isvc>-<ns>.example.com; reach them on the node port with a Host header.
  kubectl patch configmap/config-domain -n knative-serving --type merge -p '{"data":{"example.com":""}}'
  # Images loaded into kind exist in no registry, so Knative must not resolve their tags to digests.
  kubectl patch configmap/config-deployment -n knative-serving --type merge \
    -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local,docker.io,index.docker.io"}}'
  # kind has no load balancer: expose Kourier on a fixed node port that kind-config.yaml maps to
  # 127.0.0.1.
  kubectl patch service/kourier -n kourier-system --type json -p "[
    {\"op\":\"replace\",\"path\":\"/spec/type\",\"value\":\"NodePort\"},
    {\"op\":\"add\",\"path\":\"/spec/ports/0/nodePort\",\"value\":$KOURIER_NODE_PORT}]"
  wait_ready "Knative Serving" knative-serving deployment $(deployments_of knative-serving)
  wait_ready Kourier kourier-system deployment $(deployments_of kourier-system)
}

install_kserve() {
  step "KServe $KSERVE_VERSION (serverless)"
  kubectl apply --server-side --force-conflicts -f "$GH/kserve/kserve/releases/download/$KSERVE_VERSION/kserve.yaml"
  wait_ready "KServe controller" kserve deployment kserve-controller-manager
  kubectl apply --server-side --force-conflicts -f "$GH/kserve/kserve/releases/download/$KSERVE_VERSION/kserve-cluster-resources.yaml"
  # Serverless by default, and no Istio VirtualService: Kourier is the ingress.
  kubectl get configmap inferenceservice-config -n kserve -o json | python3 -c '
import json, sys
cm = json.load(sys.stdin)
deploy = json.loads(cm["data"].get("deploy", "{}"))
deploy["defaultDeploymentMode"] = "Serverless"
ingress = json.loads(cm["data"].get("ingress", "{}"))
ingress["disableIstioVirtualHost"] = True
cm["data"]["deploy"] = json.dumps(deploy)
cm["data"]["ingress"] = json.dumps(ingress)
for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
    cm["metadata"].pop(key, None)
json.dump(cm, sys.stdout)
' | kubectl apply -f -
}

install_kfp() {
  step "Kubeflow Pipelines $KFP_VERSION (standalone, platform-agnostic)"
  # One code path with the tests: hack/kfp/install.sh (KFP_IMAGES=local substitutes the images
  # hack/kfp/build-images.sh built on a machine that reaches no registry).
  "$(dirname "$0")/kfp/install.sh" install
}

install_prometheus() {
  step "Prometheus operator $PROMETHEUS_OPERATOR_VERSION"
  kubectl apply --server-side --force-conflicts -f \
    "$GH/prometheus-operator/prometheus-operator/releases/download/$PROMETHEUS_OPERATOR_VERSION/bundle.yaml"
  wait_ready "Prometheus CRDs" "" crd prometheuses.monitoring.coreos.com podmonitors.monitoring.coreos.com prometheusrules.monitoring.coreos.com
  wait_ready "Prometheus operator" default deployment prometheus-operator
}

install_project() {
  step "project manifests ($OVERLAY)"
  kubectl apply --server-side -k "$OVERLAY"
  # The canary controller runs the serving image of this checkout (make images; kind-load).
  kubectl -n "$NAMESPACE" set image deployment/mlops-canary-controller \
    controller="${SERVING_IMAGE:-mlops-platform/serving:latest}" >/dev/null
  # The model store credentials are KFP's own object store's; copy them at deploy time so no
  # secret lives in git. The template (manifests/base/storage-secret.yaml) carries no data, so a
  # later apply leaves these keys alone.
  local ak sk
  ak=$(kubectl get secret mlpipeline-minio-artifact -n kubeflow -o jsonpath='{.data.accesskey}')
  sk=$(kubectl get secret mlpipeline-minio-artifact -n kubeflow -o jsonpath='{.data.secretkey}')
  kubectl patch secret mlops-model-store -n "$NAMESPACE" --type merge \
    -p "{\"data\":{\"AWS_ACCESS_KEY_ID\":\"$ak\",\"AWS_SECRET_ACCESS_KEY\":\"$sk\"}}" >/dev/null
  echo "storage secret $NAMESPACE/mlops-model-store filled from kubeflow/mlpipeline-minio-artifact"
  # The operator creates the Prometheus StatefulSet asynchronously.
  for _ in $(seq 1 60); do
    kubectl get statefulset prometheus-mlops -n monitoring >/dev/null 2>&1 && break
    sleep 2
  done
  wait_ready Prometheus monitoring statefulset prometheus-mlops
}

if ! kubectl version --request-timeout=10s >/dev/null 2>&1; then
  echo "error: no cluster reachable from kubectl context '$(kubectl config current-context 2>/dev/null)'; run: make cluster" >&2
  exit 1
fi

case "${1:-all}" in
  all) install_cert_manager; install_knative; install_kserve; install_kfp; install_prometheus; install_project ;;
  cert-manager) install_cert_manager ;;
  knative) install_knative ;;
  kserve) install_kserve ;;
  kfp) install_kfp ;;
  prometheus) install_prometheus ;;
  project) install_project ;;
  *) echo "usage: $0 [all|cert-manager|knative|kserve|kfp|prometheus|project]" >&2; exit 2 ;;
esac
[[ ${1:-all} == all ]] && printf '\nDeployed. `make status` shows what runs and how to reach it.\n'
exit 0
