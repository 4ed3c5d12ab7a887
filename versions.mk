# Every upstream release this project uses, pinned in one place. The Makefile, the manifests'
# kustomizations and the tests read these names.
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
COMPONENT_IMAGE ?= mlops-platform/components:$(IMAGE_TAG)
SERVING_IMAGE ?= mlops-platform/serving:$(IMAGE_TAG)
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
# Cluster (hack/cluster.sh, hack/deploy.sh): every upstream release installed by `make cluster deploy`,
# each applied from its release URL by version. KServe runs in SERVERLESS mode (Knative + Kourier).
KIND_VERSION ?= v0.30.0
KIND_NODE_IMAGE ?= kindest/node:v1.34.0
MINIKUBE_KUBERNETES_VERSION ?= v1.34.0
CERT_MANAGER_VERSION ?= v1.21.2
KNATIVE_SERVING_VERSION ?= knative-v1.21.1
NET_KOURIER_VERSION ?= knative-v1.21.0
KFP_VERSION ?= 2.17.0
# the Python base image of docker/*.Dockerfile; tests build a local one (hack/build-base-image.sh)
BASE_IMAGE ?= python:3.11-slim-bookworm
# Kubeflow Pipelines on a machine without registries (hack/kfp/): Argo Workflows as KFP_VERSION's
# manifests pin it, and the PyPI ml-metadata whose store the local MLMD server fronts.
ARGO_WORKFLOWS_VERSION ?= v4.0.5
ML_METADATA_VERSION ?= 1.17.1
