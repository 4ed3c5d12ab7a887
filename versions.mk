# Every upstream release this project uses, pinned in one place. The Makefile, the manifests'
# kustomizations and the tests read these names.
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
COMPONENT_IMAGE ?= mlops-platform/components:$(IMAGE_TAG)
SERVING_IMAGE ?= mlops-platform/serving:$(IMAGE_TAG)
# The feature store's online store: Redis from Debian's package (docker/online-store.Dockerfile).
ONLINE_STORE_IMAGE ?= mlops-platform/online-store:$(IMAGE_TAG)
# kube-apiserver test harness (hack/kube-apiserver/, tests/apiserver/): the Kubernetes release
# the API tests run against, the etcd it needs (>= kubeadm's MinExternalEtcdVersion for that release),
# and the upstream releases whose CRDs the tests install (prometheus-operator's from its Go module;
# KServe's built from the kserve SDK of this version: its Go module is not served here).
KUBERNETES_VERSION ?= v1.37.2
ETCD_VERSION ?= v3.7.3
KSERVE_VERSION ?= v0.21.0
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0
# The Prometheus server the canary metrics-source tests query (hack/prometheus/build.sh): its Go
# module version (v0.316.0 is Prometheus v3.16.0).
PROMETHEUS_GO_MODULE ?= v0.316.0
# kubeconform, the Kubernetes manifest linter of `make lint` (hack/kubeconform/): built from its Go
# module (golang.stackrox.io/kube-linter is refused by the module proxy here).
KUBECONFORM_VERSION ?= v0.8.0
# Cluster (hack/cluster.sh, hack/deploy.sh): every upstream release installed by `make cluster deploy`.
# KServe runs in Standard mode (Deployments) with Gateway API; Traefik is the gateway (no Envoy).
# On a laptop each is applied from its release URL and pulls its release image; on a machine with
# no registry, hack/kind/*.sh and hack/images/*.sh build them from these same versions.
# Release images are named by tag, as the upstream release manifests name them: a digest is
# pinned only where a pinned source states it (kind's default node image below); these
# manifests state none, and no registry is reachable here to read one (docs/cluster.md, Images).
KIND_VERSION ?= v0.33.0
# kind v0.33.0's own default node image (sigs.k8s.io/kind pkg/apis/config/defaults/image.go), by digest.
KIND_NODE_IMAGE ?= kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5
MINIKUBE_KUBERNETES_VERSION ?= v1.37.0
# CoreDNS of the locally built node image: the version kubeadm KUBERNETES_VERSION asks for.
COREDNS_VERSION ?= v1.14.6
GATEWAY_API_VERSION ?= v1.5.1
TRAEFIK_VERSION ?= v3.6.12
# The KServe source the offline build uses (../shared/upstream/kserve; the Go proxy refuses
# github.com/kserve/kserve): master after v0.20.0 with the weighted-HTTPRoute canary (#5912).
KSERVE_SOURCE_COMMIT ?= aaac4e294dae2c7b1aa1886447793f3aa1c30912
# kserve-storage on PyPI: the storage initializer image built offline (hack/images/storage-initializer.sh).
KSERVE_STORAGE_VERSION ?= 0.21.0
# SeaweedFS, KFP's object store since 2.15 and the model store. KFP_VERSION's manifests name the
# image tag; the Go module proxy serves only a pseudo-version (SeaweedFS tags are not semver).
SEAWEEDFS_IMAGE_TAG ?= 4.34
SEAWEEDFS_GO_MODULE ?= v0.0.0-20261109003541-7506e5f91cd6
KFP_VERSION ?= 2.17.0
# the Python base image of docker/*.Dockerfile; tests build a local one (hack/build-base-image.sh)
BASE_IMAGE ?= python:3.11-slim-bookworm
# Kubeflow Pipelines on a machine without registries (hack/kfp/): Argo Workflows as KFP_VERSION's
# manifests pin it, and the PyPI ml-metadata whose store the local MLMD server fronts.
ARGO_WORKFLOWS_VERSION ?= v4.0.5
ML_METADATA_VERSION ?= 1.17.1
