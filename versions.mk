# Every upstream release this project uses, pinned in one place. The Makefile, the manifests'
# kustomizations and the tests read these names.
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
COMPONENT_IMAGE ?= mlops-platform/components:$(IMAGE_TAG)
SERVING_IMAGE ?= mlops-platform/serving:$(IMAGE_TAG)
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
