#!/usr/bin/env bash
# Create or delete the local cluster: kind (default) or minikube (CLUSTER=minikube).
# Usage: hack/cluster.sh create|delete. Versions come from versions.mk through the Makefile.
# KIND (the kind binary), KIND_CONFIG (default kind-config.yaml) and LOCAL_IMAGES (images to load
# into the new node, for machines without a registry; hack/kind/build.sh writes them) may be set.
set -euo pipefail

CLUSTER=${CLUSTER:-kind}
CLUSTER_NAME=${CLUSTER_NAME:-mlops}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:?set by the Makefile from versions.mk}
MINIKUBE_KUBERNETES_VERSION=${MINIKUBE_KUBERNETES_VERSION:?set by the Makefile from versions.mk}
# Traefik + KServe + KFP + Prometheus + two model versions fit in 4 CPUs / 8 GiB.
MINIKUBE_CPUS=${MINIKUBE_CPUS:-4}
MINIKUBE_MEMORY=${MINIKUBE_MEMORY:-8g}
# The gateway is reached on 127.0.0.1:31080 through `minikube start --ports`, which only the docker
# and podman drivers implement (minikube's start flags). A VM driver (kvm2, hyperkit, virtualbox,
# qemu) has no host port mapping: use `kubectl port-forward` instead (docs/cluster.md).
MINIKUBE_DRIVER=${MINIKUBE_DRIVER:-docker}
HERE=$(cd "$(dirname "$0")" && pwd)
KIND=${KIND:-kind}
KIND_CONFIG=${KIND_CONFIG:-$HERE/../kind-config.yaml}
LOCAL_IMAGES=${LOCAL_IMAGES:-}

need() { command -v "$1" >/dev/null || { echo "error: $1 not found on PATH; $2" >&2; exit 2; }; }

case "${1:-}:$CLUSTER" in
  create:kind)
    need "$KIND" "install kind $KIND_VERSION (https://kind.sigs.k8s.io, or hack/kind/kind.sh)"
    # Node images are built for a kind release; another release usually works, but say so.
    if [[ -n ${KIND_VERSION:-} ]] && ! "$KIND" version | grep -q "kind $KIND_VERSION "; then
      echo "warning: $("$KIND" version) differs from the pinned kind $KIND_VERSION (versions.mk)" >&2
    fi
    if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
      echo "kind cluster $CLUSTER_NAME already exists"
    else
      "$KIND" create cluster --name "$CLUSTER_NAME" --image "$KIND_NODE_IMAGE" \
        --config "$KIND_CONFIG" --wait 180s
    fi
    kubectl config use-context "kind-$CLUSTER_NAME" >/dev/null
    if [[ -n $LOCAL_IMAGES ]]; then
      # shellcheck disable=SC2086 # a space-separated list
      "$KIND" load docker-image --name "$CLUSTER_NAME" $LOCAL_IMAGES
    fi ;;
  delete:kind)
    need "$KIND" "install kind (https://kind.sigs.k8s.io)"
    "$KIND" delete cluster --name "$CLUSTER_NAME" ;;
  create:minikube)
    if [[ $MINIKUBE_DRIVER != docker && $MINIKUBE_DRIVER != podman ]]; then
      echo "error: MINIKUBE_DRIVER=$MINIKUBE_DRIVER: the gateway's host port needs the docker or podman driver; with a VM driver run minikube yourself and reach the gateway with kubectl port-forward (docs/cluster.md)" >&2
      exit 2
    fi
    need minikube "install minikube (https://minikube.sigs.k8s.io)"
    minikube start -p "$CLUSTER_NAME" --driver "$MINIKUBE_DRIVER" \
      --kubernetes-version "$MINIKUBE_KUBERNETES_VERSION" \
      --cpus "$MINIKUBE_CPUS" --memory "$MINIKUBE_MEMORY" --ports 31080:31080 ;;
  delete:minikube)
    need minikube "install minikube (https://minikube.sigs.k8s.io)"
    minikube delete -p "$CLUSTER_NAME" ;;
  *)
    echo "usage: CLUSTER=kind|minikube $0 create|delete (got '${1:-}' with CLUSTER=$CLUSTER)" >&2
    exit 2 ;;
esac
