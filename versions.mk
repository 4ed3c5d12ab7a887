# Every upstream release this project uses, pinned in one place. The Makefile, the manifests'
# kustomizations and the tests read these names.
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
COMPONENT_IMAGE ?= mlops-platform/components:$(IMAGE_TAG)
SERVING_IMAGE ?= mlops-platform/serving:$(IMAGE_TAG)
