#!/usr/bin/env bash
# Install the platform onto the current kubectl context, in order, waiting for each piece:
#   gateway      Gateway API CRDs + Traefik (the Gateway implementation) + KServe's Gateway
#   kserve       KServe in Standard mode with Gateway API (webhook certificates signed here)
#   object-store SeaweedFS, KFP's object store and the model store, as KFP's manifests define it
#   kfp          Kubeflow Pipelines (standalone, platform-agnostic)
#   prometheus   the Prometheus operator
#   project      the project's manifests (OVERLAY) and the model store credentials
# Every version comes from versions.mk (through the Makefile). Upstream YAML is read from the
# upstream release (URL) at that version and never copied into this repository; hack/manifests.py
# adjusts it on the way (image substitution, CRDs first, the webhook CA).
#
# Local builds (machines without a registry; see hack/kind/build.sh) switch by environment only;
# each unset variable keeps the release default:
#   KSERVE_MANIFESTS        a KServe kustomize dir (source's config/overlays/standalone/kserve)
#   GATEWAY_API_CRDS        a Gateway API CRD file or kustomize dir
#   TRAEFIK_RBAC            Traefik's kubernetes-gateway-rbac.yml
#   KFP_MANIFESTS           KFP's manifests/kustomize dir
#   PROMETHEUS_OPERATOR_BUNDLE  the operator's bundle.yaml
#   KSERVE_CONTROLLER_IMAGE KUBE_RBAC_PROXY_IMAGE STORAGE_INITIALIZER_IMAGE TRAEFIK_IMAGE
#   SEAWEEDFS_IMAGE PROMETHEUS_OPERATOR_IMAGE PROMETHEUS_CONFIG_RELOADER_IMAGE PROMETHEUS_IMAGE
# Usage: hack/deploy.sh [all|check|STEP...] (all = gateway kserve object-store kfp prometheus project;
#        check = only the tool check every run starts with)
set -euo pipefail
# A failure inside $(...) stops the script too (bash clears errexit there otherwise).
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

: "${KSERVE_VERSION:?} ${KFP_VERSION:?} ${PROMETHEUS_OPERATOR_VERSION:?}"
: "${GATEWAY_API_VERSION:?} ${TRAEFIK_VERSION:?} ${SEAWEEDFS_IMAGE_TAG:?}"
OVERLAY=${OVERLAY:-manifests/overlays/dev}
# The project's namespace is the one manifests/base declares (so are monitoring and kubeflow); it
# is not a setting: a kustomize `namespace:` would also move objects that must stay where they are.
PROJECT_NAMESPACE=mlops
TIMEOUT=${TIMEOUT:-600s}
# The Makefile passes the project's venv Python (it has PyYAML); run by hand, python3 must have it.
PYTHON=${PYTHON:-python3}
GH=https://github.com
RAW=https://raw.githubusercontent.com
KSERVE_MANIFESTS=${KSERVE_MANIFESTS:-$GH/kserve/kserve/releases/download/$KSERVE_VERSION/kserve.yaml}
GATEWAY_API_CRDS=${GATEWAY_API_CRDS:-$GH/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml}
TRAEFIK_RBAC=${TRAEFIK_RBAC:-$RAW/traefik/traefik/$TRAEFIK_VERSION/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml}
KFP_MANIFESTS=${KFP_MANIFESTS:-$GH/kubeflow/pipelines/manifests/kustomize}
PROMETHEUS_OPERATOR_BUNDLE=${PROMETHEUS_OPERATOR_BUNDLE:-$GH/prometheus-operator/prometheus-operator/releases/download/$PROMETHEUS_OPERATOR_VERSION/bundle.yaml}

# require_tools: before any work, one line naming every tool the deploy needs and cannot find.
require_tools() {
  local tool missing=""
  for tool in kubectl jq openssl base64; do
    command -v "$tool" >/dev/null 2>&1 || missing+=" $tool"
  done
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    missing+=" $PYTHON"
  elif ! "$PYTHON" -c 'import yaml' >/dev/null 2>&1; then
    missing+=" PyYAML(for $PYTHON)"
  fi
  if [[ -n $missing ]]; then
    echo "error: make deploy needs${missing}: not found; install them (Debian/Ubuntu: apt-get install jq openssl; macOS: brew install jq openssl) and run it again" >&2
    exit 2
  fi
}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
manifests() { "$PYTHON" hack/manifests.py "$@"; }
apply() { kubectl apply --server-side --force-conflicts --field-manager=mlops-deploy "$@"; }
ensure_namespace() { kubectl create namespace "$1" --dry-run=client -o yaml | apply -f - >/dev/null; }

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

# apply_crds_then_rest SOURCE [hack/manifests.py options]: CRDs first, established, then the rest
# (a release file that holds a CRD and an object of its kind fails on the first apply otherwise).
apply_crds_then_rest() {
  local src=$1 crds
  shift
  crds=$(manifests "$src" --part crds "$@")
  if [[ -n $crds && $crds != "[]"* ]]; then
    apply -f - <<<"$crds" >/dev/null
    kubectl wait --for condition=established --timeout="$TIMEOUT" \
      $(kubectl apply --dry-run=client -o name -f - <<<"$crds" | sed 's|^customresourcedefinition.apiextensions.k8s.io/|crd/|') >/dev/null
  fi
  manifests "$src" --part rest "$@" | apply -f -
}

install_gateway() {
  step "Gateway API $GATEWAY_API_VERSION + Traefik $TRAEFIK_VERSION"
  apply_crds_then_rest "$GATEWAY_API_CRDS"
  # Traefik's own RBAC reference file binds the ServiceAccount in `default`; ours runs in traefik.
  # Traefik watches only the Gateway's namespace and the project's (its --providers.kubernetesgateway
  # .namespaces): it gets its namespaced rights (Services, Secrets, ConfigMaps, routes) there only,
  # in Roles that need both namespaces to exist (the project step labels its own later).
  ensure_namespace kserve
  ensure_namespace "$PROJECT_NAMESPACE"
  manifests "$TRAEFIK_RBAC" --subject-namespace traefik \
    --namespaced-rbac kserve --namespaced-rbac "$PROJECT_NAMESPACE" | apply -f -
  manifests manifests/gateway --image "traefik=${TRAEFIK_IMAGE:-traefik:$TRAEFIK_VERSION}" | apply -f -
  wait_ready Traefik traefik deployment traefik
  kubectl wait --for condition=Programmed --timeout="$TIMEOUT" -n kserve gateway/kserve-ingress-gateway >/dev/null
  echo "ready: Gateway kserve/kserve-ingress-gateway (Traefik, node port 31080)"
}

# sign_webhook_certs SOURCE: a self-signed CA (kept in kserve/mlops-webhook-ca, so a second deploy
# keeps the certificates valid) signs a serving certificate for each cert-manager Certificate in
# the KServe manifests, into the Secret that Certificate names. Prints the CA file's path.
sign_webhook_certs() {
  local src=$1 dir line secret ns names san
  dir=$(mktemp -d)
  if kubectl get secret -n kserve mlops-webhook-ca >/dev/null 2>&1; then
    kubectl get secret -n kserve mlops-webhook-ca -o jsonpath='{.data.ca\.crt}' | base64 -d >"$dir/ca.crt"
    kubectl get secret -n kserve mlops-webhook-ca -o jsonpath='{.data.ca\.key}' | base64 -d >"$dir/ca.key"
  else
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mlops-platform webhook CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    kubectl create secret generic mlops-webhook-ca -n kserve --from-file="$dir/ca.crt" \
      --from-file="$dir/ca.key" >/dev/null
  fi
  local certs
  certs=$(manifests "$src" --certificates)
  while read -r line; do
    [[ -n $line ]] || continue
    secret=$(jq -r .secret <<<"$line")
    ns=$(jq -r .namespace <<<"$line")
    names=$(jq -r '.dns_names | join(",")' <<<"$line")
    ensure_namespace "$ns"
    if kubectl get secret -n "$ns" "$secret" -o jsonpath='{.data.tls\.crt}' 2>/dev/null | base64 -d >"$dir/old.crt" &&
      [[ -s $dir/old.crt ]] && openssl verify -CAfile "$dir/ca.crt" "$dir/old.crt" >/dev/null 2>&1 &&
      openssl x509 -in "$dir/old.crt" -noout -checkend 2592000 >/dev/null; then
      continue # still valid for 30 days and signed by this CA
    fi
    san=$(sed 's/\([^,]*\)/DNS:\1/g' <<<"$names")
    openssl req -newkey rsa:2048 -nodes -subj "/CN=${names%%,*}" -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
    openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 825 \
      -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") -out "$dir/tls.crt" 2>/dev/null
    kubectl create secret generic "$secret" -n "$ns" --type kubernetes.io/tls --from-file="$dir/tls.crt" \
      --from-file="$dir/tls.key" --from-file="$dir/ca.crt" --dry-run=client -o yaml | apply -f - >/dev/null
    echo "signed $ns/$secret for $names" >&2
  done <<<"$certs"
  echo "$dir/ca.crt"
}

# The annotations the deploy step, the canary controller, the traffic writer and the retraining
# trigger keep on an InferenceService (all named in components/isvc_metadata.py, one prefix;
# tests/kind/test_cluster_files.py keeps this list equal to its ANNOTATIONS).
# None is needed on the pods: a model server reads its version from the model it serves.
ROLLOUT_ANNOTATIONS='["mlops.platform/model-version", "mlops.platform/stable-version",
  "mlops.platform/stable-storage-uri", "mlops.platform/canary-version", "mlops.platform/rolled-back-version",
  "mlops.platform/last-decision", "mlops.platform/rollout-policy", "mlops.platform/rollout-state",
  "mlops.platform/rollout-status", "mlops.platform/rollout", "mlops.platform/retraining-policy",
  "mlops.platform/last-retraining"]'

install_kserve() {
  step "KServe $KSERVE_VERSION (Standard mode, Gateway API)"
  local ca probe
  # The release file has no Namespace object: create it before anything namespaced.
  ensure_namespace kserve
  ca=$(sign_webhook_certs "$KSERVE_MANIFESTS")
  local opts=(
    --drop-kind Certificate --drop-kind Issuer --ca-bundle "$ca"
    --image "kserve/kserve-controller=${KSERVE_CONTROLLER_IMAGE:-}"
    --image "quay.io/brancz/kube-rbac-proxy=${KUBE_RBAC_PROXY_IMAGE:-}"
    --image "kserve/storage-initializer=${STORAGE_INITIALIZER_IMAGE:-}"
    --configmap-json "kserve/inferenceservice-config:deploy.defaultDeploymentMode=Standard"
    --configmap-json "kserve/inferenceservice-config:ingress.enableGatewayApi=true"
    --configmap-json "kserve/inferenceservice-config:ingress.kserveIngressGateway=kserve/kserve-ingress-gateway"
    --configmap-json "kserve/inferenceservice-config:ingress.disableIstioVirtualHost=true"
    # Traefik ignores HTTPRoute timeouts; it enforces KServe's default itself (manifests/gateway).
    --configmap-json "kserve/inferenceservice-config:ingress.disableHTTPRouteTimeout=true"
    # KServe copies an InferenceService's annotations onto its predictors' pod templates: the
    # rollout's bookkeeping changes every analysis and must not restart the model pods.
    --configmap-json "kserve/inferenceservice-config:inferenceService.serviceAnnotationDisallowedList=$ROLLOUT_ANNOTATIONS"
    --configmap-json "kserve/inferenceservice-config:inferenceService.serviceLabelDisallowedList=[\"mlops.platform/rollout-step\"]"
  )
  apply_crds_then_rest "$KSERVE_MANIFESTS" "${opts[@]}" >/dev/null
  rm -rf "$(dirname "$ca")"
  wait_ready "KServe controller" kserve deployment kserve-controller-manager
  # Ready pods are not a serving webhook: wait until the API server's call to it succeeds.
  # (kserve-cluster-resources.yaml is not applied: a custom container needs no ServingRuntime.)
  probe='{"apiVersion":"serving.kserve.io/v1beta1","kind":"InferenceService","metadata":{"name":"webhook-probe","namespace":"default"},
    "spec":{"predictor":{"containers":[{"name":"kserve-container","image":"probe"}]}}}'
  for _ in $(seq 1 60); do
    kubectl create --dry-run=server -f - <<<"$probe" >/dev/null 2>&1 && { echo "ready: KServe webhooks"; return; }
    sleep 2
  done
  echo "error: KServe's admission webhook does not answer" >&2
  kubectl create --dry-run=server -f - <<<"$probe" >&2 || true
  exit 1
}

# The kustomization KFP's platform-agnostic env applies, narrowed to the object store: the same
# namespace and labels (its selectors too), so `kfp` later applies identical objects over these.
object_store_kustomization() {
  local dir=$1
  "$PYTHON" - "$KFP_MANIFESTS" "$KFP_VERSION" "$dir" <<'PY'
import os, sys, urllib.request, yaml
from pathlib import Path
src, version, out = sys.argv[1:]
env = "env/platform-agnostic/kustomization.yaml"
if src.startswith("https://github.com/"):
    raw = src.replace("https://github.com/", "https://raw.githubusercontent.com/").replace(
        "/manifests/kustomize", f"/{version}/manifests/kustomize")
    text = urllib.request.urlopen(f"{raw}/{env}", timeout=60).read().decode()
    base = f"{src}/third-party/seaweedfs/base?ref={version}"
else:
    text = (Path(src) / env).read_text()
    # kustomize takes a local base only by a relative path.
    base = os.path.relpath((Path(src) / "third-party/seaweedfs/base").resolve(), Path(out).resolve())
kfp = yaml.safe_load(text)
assert any("third-party/seaweedfs" in r for r in kfp["resources"]), "KFP no longer installs SeaweedFS"
mine = {"apiVersion": kfp["apiVersion"], "kind": "Kustomization", "namespace": kfp["namespace"],
        "labels": kfp.get("labels", []), "resources": [base]}
Path(out, "kustomization.yaml").write_text(yaml.safe_dump(mine, sort_keys=False))
PY
}

install_object_store() {
  step "SeaweedFS (KFP $KFP_VERSION's object store, image tag $SEAWEEDFS_IMAGE_TAG)"
  local dir
  dir=$(mktemp -d)
  object_store_kustomization "$dir"
  ensure_namespace kubeflow
  manifests "$dir" --image "ghcr.io/chrislusf/seaweedfs=${SEAWEEDFS_IMAGE:-}" | apply -f -
  rm -rf "$dir"
  wait_ready SeaweedFS kubeflow deployment seaweedfs
}

install_kfp() {
  step "Kubeflow Pipelines $KFP_VERSION (standalone, platform-agnostic)"
  # One code path with the tests: hack/kfp/install.sh (KFP_IMAGES=local substitutes the images
  # hack/kfp/build-images.sh built on a machine that reaches no registry).
  "$(dirname "$0")/kfp/install.sh" install
}

install_prometheus() {
  step "Prometheus operator $PROMETHEUS_OPERATOR_VERSION"
  local opts=(
    --image "quay.io/prometheus-operator/prometheus-operator=${PROMETHEUS_OPERATOR_IMAGE:-}"
    --image "quay.io/prometheus-operator/prometheus-config-reloader=${PROMETHEUS_CONFIG_RELOADER_IMAGE:-}"
  )
  apply_crds_then_rest "$PROMETHEUS_OPERATOR_BUNDLE" "${opts[@]}" >/dev/null
  wait_ready "Prometheus operator" default deployment prometheus-operator
}

# apply_dask_crds: the dask-kubernetes operator's CRDs (DaskCluster and its kin) from the operator's
# own package at the version pyproject.toml pins (installed in the venv by make install), so the
# CRDs and the operator in the component image are one release.
apply_dask_crds() {
  local dir
  dir=$("$PYTHON" -c 'import dask_kubernetes, pathlib; print(pathlib.Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds")') || {
    echo "error: the dask-kubernetes package is not installed in $PYTHON; run: make install" >&2
    exit 1
  }
  apply -f "$dir" >/dev/null
  # A CRD applied a moment ago may have no status yet, which `kubectl wait` takes for an error.
  local try
  for try in $(seq 1 30); do
    kubectl wait --for condition=established --timeout="$TIMEOUT" crd/daskclusters.kubernetes.dask.org \
      crd/daskworkergroups.kubernetes.dask.org >/dev/null 2>&1 && break
    if [[ $try == 30 ]]; then
      echo "error: the DaskCluster CRDs from $dir are not established" >&2
      exit 1
    fi
    sleep 2
  done
  echo "ready: DaskCluster CRDs (dask-kubernetes $("$PYTHON" -c 'from importlib.metadata import version; print(version("dask-kubernetes"))'))"
}

install_project() {
  step "project manifests ($OVERLAY)"
  local opts=()
  [[ -n ${PROMETHEUS_IMAGE:-} ]] && opts+=(--set "Prometheus/mlops:spec.image=$PROMETHEUS_IMAGE")
  # The canary controller and the dashboard run the serving image of this checkout (make images;
  # kind-load), set before the apply so a redeploy rolls each once, straight to that image.
  opts+=(--image "mlops-platform/serving=${SERVING_IMAGE:?set by the Makefile (versions.mk)}")
  # The dask-kubernetes operator and the feature server run the component image, which has both
  # installed; the online store runs Redis from Debian's package (docker/online-store.Dockerfile).
  opts+=(--image "mlops-platform/components=${COMPONENT_IMAGE:?set by the Makefile (versions.mk)}")
  opts+=(--image "mlops-platform/online-store=${ONLINE_STORE_IMAGE:?set by the Makefile (versions.mk)}")
  apply_dask_crds
  manifests "$OVERLAY" "${opts[@]}" | apply -f -
  # The model store credentials are the object store's own; copy them at deploy time so no
  # secret lives in git. The template (manifests/base/storage-secret.yaml) carries no data, so a
  # later apply leaves these keys alone.
  local ak sk had
  ak=$(kubectl get secret mlpipeline-minio-artifact -n kubeflow -o jsonpath='{.data.accesskey}')
  sk=$(kubectl get secret mlpipeline-minio-artifact -n kubeflow -o jsonpath='{.data.secretkey}')
  had=$(kubectl get secret mlops-model-store -n "$PROJECT_NAMESPACE" -o jsonpath='{.data.AWS_ACCESS_KEY_ID}')
  kubectl patch secret mlops-model-store -n "$PROJECT_NAMESPACE" --type merge \
    -p "{\"data\":{\"AWS_ACCESS_KEY_ID\":\"$ak\",\"AWS_SECRET_ACCESS_KEY\":\"$sk\"}}" >/dev/null
  echo "storage secret $PROJECT_NAMESPACE/mlops-model-store filled from kubeflow/mlpipeline-minio-artifact"
  # The dashboard reads the registry with these keys, as variables resolved when its pod starts:
  # on a first deploy its pod started before they were filled, so it starts again once.
  if [[ -z $had ]]; then
    kubectl rollout restart deployment/mlops-dashboard -n "$PROJECT_NAMESPACE" >/dev/null
    echo "dashboard restarted to read the model store's keys"
  fi
  # The model servers' bearer token for write endpoints (feedback): made once, kept on re-deploy.
  if [ -z "$(kubectl get secret mlops-serving-token -n "$PROJECT_NAMESPACE" -o jsonpath='{.data.token}')" ]; then
    local token
    token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | base64 -w0)
    kubectl patch secret mlops-serving-token -n "$PROJECT_NAMESPACE" --type merge \
      -p "{\"data\":{\"token\":\"$token\"}}" >/dev/null
    echo "serving token $PROJECT_NAMESPACE/mlops-serving-token created (key: token)"
  fi
  # The operator creates the Prometheus StatefulSet asynchronously.
  for _ in $(seq 1 60); do
    kubectl get statefulset prometheus-mlops -n monitoring >/dev/null 2>&1 && break
    sleep 2
  done
  wait_ready Prometheus monitoring statefulset prometheus-mlops
  wait_ready "Dask operator" kubeflow deployment mlops-dask-operator
  wait_ready "online store (Redis)" "$PROJECT_NAMESPACE" deployment mlops-online-store
  # Its first start also writes, applies and materializes the demo repository (feature-server.yaml).
  wait_ready "feature server (Feast)" "$PROJECT_NAMESPACE" deployment mlops-feature-server
}

steps=("$@")
require_tools
if [[ ${steps[0]:-} == check ]]; then
  echo "deploy: every tool found (kubectl, jq, openssl, base64, PyYAML)"
  exit 0
fi
if ! kubectl version --request-timeout=10s >/dev/null 2>&1; then
  echo "error: no cluster reachable from kubectl context '$(kubectl config current-context 2>/dev/null)'; run: make cluster" >&2
  exit 1
fi

[[ ${#steps[@]} -eq 0 || ${steps[0]} == all ]] && steps=(gateway kserve object-store kfp prometheus project)
for s in "${steps[@]}"; do
  start=$SECONDS
  case $s in
    gateway) install_gateway ;;
    kserve) install_kserve ;;
    object-store) install_object_store ;;
    kfp) install_kfp ;;
    prometheus) install_prometheus ;;
    project) install_project ;;
    *) echo "usage: $0 [all|gateway|kserve|object-store|kfp|prometheus|project ...]" >&2; exit 2 ;;
  esac
  echo "deploy: $s in $((SECONDS - start)) s"
done
[[ ${1:-all} == all ]] && printf '\nDeployed. `make status` shows what runs and how to reach it.\n'
exit 0
