#!/usr/bin/env bash
# Install Kubeflow Pipelines onto the current kubectl context from the pinned release's own
# kustomize manifests (manifests/kustomize of KFP_VERSION: cluster-scoped-resources, then
# env/platform-agnostic), the one path `make deploy` (hack/deploy.sh kfp) and the tests take.
#
# KFP_IMAGES=auto (default): local when every image build-images.sh makes is in Docker, else release.
# KFP_IMAGES=release: the release's images, pulled from their registries (a laptop).
# KFP_IMAGES=local: the images hack/kfp/build-images.sh built here, substituted with kustomize
#   `images:` and two patches (the Argo executor and the KFP driver/launcher images are named in
#   args/env, where `images:` does not reach), loaded into kind first. The Deployments whose images
#   are not built here (cache deployer + cache server, metadata writer, viewer controller,
#   visualization server) are left out, and the metadata Envoy runs the MLMD image's gRPC-Web
#   translator instead of Envoy; see hack/kfp/README.md.
#
# Where the manifests come from: on a laptop, kustomize fetches them from GitHub at
# ?ref=KFP_VERSION. With KFP_UPSTREAM (../shared/upstream/kfp) present, they are extracted into
# ~/.cache and the three GitHub URLs of Argo's manifests (?ref=ARGO_WORKFLOWS_VERSION) are pointed
# at the extracted Argo tree; nothing is copied into this repository.
# Usage: hack/kfp/install.sh [install|render|load|wait|delete]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

KFP_IMAGES=${KFP_IMAGES:-auto}
KFP_NAMESPACE=kubeflow
TIMEOUT=${TIMEOUT:-900s}
CLUSTER_NAME=${CLUSTER_NAME:-mlops}
GH=https://github.com
ARGO_GH=$GH/argoproj/argo-workflows/manifests
# The object store's image (SeaweedFS, built by the cluster scripts when no registry is reachable).
SEAWEEDFS_IMAGE=${SEAWEEDFS_IMAGE:-}

# kustomize_root: a directory holding manifests/kustomize of KFP_VERSION, or a GitHub URL prefix.
kustomize_root() {
  if [[ ! -f $KFP_UPSTREAM/kfp-src.tar.gz ]]; then
    echo "$GH/kubeflow/pipelines/manifests/kustomize"
    return
  fi
  local dir=$KFP_CACHE/kustomize-$KFP_VERSION-argo$ARGO_WORKFLOWS_VERSION
  if [[ ! -f $dir/.ready ]]; then
    extract_upstream
    rm -rf "$dir" && mkdir -p "$dir"
    cp -r "$(kfp_src)/manifests/kustomize/." "$dir/"
    local argo=$dir/third-party/argo/upstream-$ARGO_WORKFLOWS_VERSION
    mkdir -p "$argo" && tar -xzf "$KFP_UPSTREAM/argo-workflows-manifests.tar.gz" -C "$argo"
    # kustomize wants relative paths: each rewrite is relative to the kustomization that names it.
    local file rel
    for file in third-party/argo/base third-party/argo/installs/namespace third-party/argo/installs/cluster \
      third-party/argo/installs/namespace/cluster-scoped; do
      rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$argo/manifests" "$dir/$file")
      grep -q "$ARGO_GH/[^?]*?ref=$ARGO_WORKFLOWS_VERSION" "$dir/$file/kustomization.yaml" ||
        { log "no Argo $ARGO_WORKFLOWS_VERSION URL in $file/kustomization.yaml"; exit 1; }
      sed -i "s#$ARGO_GH/\([^?]*\)?ref=$ARGO_WORKFLOWS_VERSION[^ ]*#$rel/\1#" "$dir/$file/kustomization.yaml"
    done
    ! grep -rq "https://github.com/[^ ]*?ref=" --include=kustomization.yaml "$dir" ||
      { log "a remote reference is left in $dir"; exit 1; }
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# ref PATH: a kustomization under the root (a GitHub URL gets ?ref=KFP_VERSION).
ref() {
  local root
  root=$(kustomize_root)
  if [[ $root == https://* ]]; then echo "$root/$1?ref=$KFP_VERSION"; else echo "$root/$1"; fi
}

local_image() { "$HERE/build-images.sh" list | grep "/$1:"; }

# image_override UPSTREAM_NAME LOCAL_NAME: one entry of the overlay's `images:`.
image_override() {
  local tag=$2
  printf -- '- name: %s\n  newName: %s\n  newTag: "%s"\n' "$1" "${tag%:*}" "${tag##*:}"
}

# overlay: a kustomization over env/platform-agnostic, written under the cache (it names paths of
# this machine): the local images and their patches (KFP_IMAGES=local), and the small node's
# CPU requests (small_node); with neither it adds nothing.
overlay() {
  local dir=$KFP_CACHE/overlay-$KFP_VERSION-$KFP_IMAGES base
  base=$(ref env/platform-agnostic)
  rm -rf "$dir" && mkdir -p "$dir"
  [[ $base == /* ]] && base=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$base" "$dir")
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "- $base"
    # `if`, not `&&`: a false test must not be the block's status (this runs in `$(overlay)`,
    # where errexit is off, so an `&&` list that ends false passed only by that accident).
    if [[ $KFP_IMAGES == local ]]; then local_images; fi
    local patches
    patches=$(
      requeue_patch
      if [[ $KFP_IMAGES == local ]]; then local_patches; fi
      if small_node; then small_node_patches; fi
    )
    [[ -z $patches ]] || printf 'patches:\n%s\n' "$patches"
  } >"$dir/kustomization.yaml"
  echo "$dir"
}

local_images() {
  echo "images:"
  image_override ghcr.io/kubeflow/kfp-api-server "$(local_image api-server)"
  image_override ghcr.io/kubeflow/kfp-persistence-agent "$(local_image persistence-agent)"
  image_override ghcr.io/kubeflow/kfp-scheduled-workflow-controller "$(local_image scheduled-workflow-controller)"
  image_override ghcr.io/kubeflow/kfp-frontend "$(local_image frontend)"
  image_override quay.io/argoproj/workflow-controller "$(local_image workflow-controller)"
  image_override gcr.io/tfx-oss-public/ml_metadata_store_server "$(local_image metadata-server)"
  image_override mysql "$(local_image mariadb)"
  # The wait-for-port init containers need sh and nc: the tools image has both.
  image_override docker.io/alpine "$(local_image tools)"
  if [[ -n $SEAWEEDFS_IMAGE ]]; then
    image_override ghcr.io/chrislusf/seaweedfs "$SEAWEEDFS_IMAGE"
  fi
}

# ARGO_REQUEUE_TIME (default 2s): how soon Argo's workflow controller looks at a workflow again
# after one of its pods changed (its DEFAULT_REQUEUE_TIME, workflow/controller/rate_limiters.go at
# ARGO_WORKFLOWS_VERSION). Argo's default of 10 s is paid twice per KFP step (its driver pod, then
# its executor), so an 8-step training run waited over two minutes doing nothing; Argo suggests
# 2 s for workflows of many short steps. A large, busy cluster may want Argo's 10s back.
ARGO_REQUEUE_TIME=${ARGO_REQUEUE_TIME:-2s}

requeue_patch() {
  cat <<EOF
- target: {group: apps, version: v1, kind: Deployment, name: workflow-controller}
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: workflow-controller}
    spec:
      template:
        spec:
          containers:
          - name: workflow-controller
            env:
            - {name: DEFAULT_REQUEUE_TIME, value: "$ARGO_REQUEUE_TIME"}
EOF
}

# local_patches: the `patches:` entries of the local images (a list's items, no header).
local_patches() {
  local argoexec driver launcher
  argoexec=$(local_image argoexec)
  driver=$(local_image driver)
  launcher=$(local_image launcher)
  cat <<EOF
- target: {group: apps, version: v1, kind: Deployment, name: workflow-controller}
  patch: |-
    - {op: test, path: /spec/template/spec/containers/0/args/2, value: --executor-image}
    - {op: replace, path: /spec/template/spec/containers/0/args/3, value: $argoexec}
- target: {group: apps, version: v1, kind: Deployment, name: ml-pipeline}
  patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: ml-pipeline}
    spec:
      template:
        spec:
          containers:
          - name: ml-pipeline-api-server
            env:
            - {name: V2_DRIVER_IMAGE, value: $driver}
            - {name: V2_LAUNCHER_IMAGE, value: $launcher}
EOF
  # The UI's gRPC-Web calls to MLMD: the metadata-envoy Deployment runs the MLMD image's gRPC-Web
  # translator (hack/kfp/mlmd/grpc_web_proxy.py) towards the upstream config's own cluster.
  cat <<EOF
- target: {group: apps, version: v1, kind: Deployment, name: metadata-envoy-deployment}
  patch: |-
    - {op: test, path: /spec/template/spec/containers/0/args/0, value: /etc/envoy/envoy-config.yaml}
    - {op: replace, path: /spec/template/spec/containers/0/image, value: $(local_image metadata-server)}
    - {op: add, path: /spec/template/spec/containers/0/command, value: [/bin/metadata_grpc_web]}
    - {op: replace, path: /spec/template/spec/containers/0/args, value: [--listen_port=9090, --upstream=metadata-grpc-service:8080]}
EOF
  # The offline node image has no volume provisioner: its PersistentVolumes are hostPath, and the
  # kubelet applies no fsGroup to hostPath. So the two stateful pods (non-root, each with its
  # fsGroup) get a root init container that hands their data directory to that uid:gid first.
  local tools
  tools=$(local_image tools)
  volume_owner_patch mysql mysql-persistent-storage /var/lib/mysql 999 "$tools"
  volume_owner_patch seaweedfs data /data 1000 "$tools"
  local name
  for name in cache-deployer-deployment cache-server metadata-writer \
    ml-pipeline-viewer-crd ml-pipeline-visualizationserver; do
    printf -- '- patch: |-\n    $patch: delete\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: %s}\n' "$name"
  done
}

# volume_owner_patch DEPLOYMENT VOLUME PATH UID IMAGE: an init container that chowns VOLUME to UID.
volume_owner_patch() {
  cat <<EOF
- target: {group: apps, version: v1, kind: Deployment, name: $1}
  patch: |-
    - {op: test, path: /spec/template/spec/securityContext/fsGroup, value: $4}
    - op: add
      path: /spec/template/spec/initContainers
      value:
      - name: volume-owner
        image: $5
        command: [chown, "$4:$4", "$3"]
        securityContext: {runAsUser: 0, runAsNonRoot: false, allowPrivilegeEscalation: false,
          capabilities: {drop: [ALL], add: [CHOWN]}}
        volumeMounts: [{name: $2, mountPath: "$3"}]
EOF
}

# KFP_SMALL_NODE=auto (default): on when the cluster's nodes have 2 CPUs or fewer in all. There,
# the release's CPU requests (API server 250m, persistence agent 120m, Argo 100m, database 100m)
# with Kubernetes' own and the platform's leave no room for a run's driver pod (100m): it stays
# Pending ("Insufficient cpu"). On, they request SMALL_NODE_CPU each; their limits are unchanged.
KFP_SMALL_NODE=${KFP_SMALL_NODE:-auto}
SMALL_NODE_CPU=${SMALL_NODE_CPU:-20m}

small_node() {
  [[ $KFP_SMALL_NODE == auto ]] || { [[ $KFP_SMALL_NODE == 1 ]]; return; }
  local millis
  millis=$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.allocatable.cpu}{"\n"}{end}' 2>/dev/null |
    awk '/m$/ {sub("m", ""); t += $1; next} {t += $1 * 1000} END {print t + 0}')
  ((millis > 0 && millis <= 2000))
}

# request_patch DEPLOYMENT CONTAINER: its first container's CPU request set to SMALL_NODE_CPU.
request_patch() {
  cat <<EOF
- target: {group: apps, version: v1, kind: Deployment, name: $1}
  patch: |-
    - {op: test, path: /spec/template/spec/containers/0/name, value: $2}
    - {op: replace, path: /spec/template/spec/containers/0/resources/requests/cpu, value: $SMALL_NODE_CPU}
EOF
}

small_node_patches() {
  request_patch ml-pipeline ml-pipeline-api-server
  request_patch ml-pipeline-persistenceagent ml-pipeline-persistenceagent
  request_patch workflow-controller workflow-controller
  request_patch mysql mysql
}

render() {
  local dir
  dir=$(overlay)
  kubectl kustomize "$dir"
}

apply_rendered() {
  local out=$KFP_CACHE/rendered-$KFP_VERSION-$KFP_IMAGES.yaml
  render >"$out"
  kubectl apply --server-side --force-conflicts -f "$out"
}

load_images() {
  [[ $KFP_IMAGES == local ]] || return 0
  local -a images
  mapfile -t images < <("$HERE/build-images.sh" list)
  [[ -n $SEAWEEDFS_IMAGE ]] && images+=("$SEAWEEDFS_IMAGE")
  local img
  for img in "${images[@]}"; do
    image_exists "$img" || { log "image $img is missing: run make kfp-images"; exit 1; }
  done
  ${KIND:-kind} load docker-image --name "$CLUSTER_NAME" "${images[@]}"
}

wait_ready() {
  kubectl wait --for condition=established --timeout="$TIMEOUT" \
    crd/workflows.argoproj.io crd/scheduledworkflows.kubeflow.org >/dev/null
  local deploy
  for deploy in $(kubectl get deployments -n "$KFP_NAMESPACE" -o name); do
    if ! kubectl rollout status -n "$KFP_NAMESPACE" "$deploy" --timeout="$TIMEOUT" >/dev/null; then
      log "not ready: $deploy in $KFP_NAMESPACE after $TIMEOUT"
      kubectl get pods -n "$KFP_NAMESPACE" -o wide >&2 || true
      kubectl get events -n "$KFP_NAMESPACE" --sort-by=.lastTimestamp 2>/dev/null | tail -n 20 >&2 || true
      exit 1
    fi
  done
  log "ready: Kubeflow Pipelines $KFP_VERSION in namespace $KFP_NAMESPACE"
}

install() {
  stage "kfp: load images" load_images
  stage "kfp: cluster-scoped" kubectl apply --server-side --force-conflicts -k "$(ref cluster-scoped-resources)"
  kubectl wait --for condition=established --timeout="$TIMEOUT" crd/applications.app.k8s.io >/dev/null
  stage "kfp: apply" apply_rendered
  stage "kfp: wait" wait_ready
  print_stage_times
}

if [[ $KFP_IMAGES == auto ]]; then
  KFP_IMAGES=local
  for img in $("$HERE/build-images.sh" list); do
    image_exists "$img" || { KFP_IMAGES=release && break; }
  done
  log "KFP_IMAGES=auto: using the $KFP_IMAGES images"
fi

case ${1:-install} in
  install) install ;;
  render) render ;;
  load) load_images ;;
  wait) wait_ready ;;
  delete)
    render | kubectl delete --ignore-not-found -f - || true
    kubectl delete --ignore-not-found -k "$(ref cluster-scoped-resources)"
    ;;
  *) echo "usage: $0 [install|render|load|wait|delete]" >&2; exit 2 ;;
esac
