# The user's entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

include versions.mk

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Run with a small data set by default so a laptop finishes quickly; override: make demo ROWS=100000
ROWS ?= 20000
PYTEST_ARGS ?=

.PHONY: help install demo test test-fast lint fmt compile lock clean dashboard-assets grafana-dashboards docs

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# The dashboard's browser bundle (mlops_control/dashboard/static, package data of the wheel): npm
# installs the exact versions of package-lock.json, esbuild bundles them with the page code. An
# order-only prerequisite of the venv, so every target that needs the venv has a current bundle.
DASHBOARD_FRONTEND := mlops_control/dashboard/frontend
DASHBOARD_BUNDLE := mlops_control/dashboard/static/dashboard.js
$(DASHBOARD_BUNDLE): $(DASHBOARD_FRONTEND)/package.json $(DASHBOARD_FRONTEND)/package-lock.json $(wildcard $(DASHBOARD_FRONTEND)/src/*)
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js >= 18 (it builds the dashboard's bundle)" >&2; exit 1; }
	cd $(DASHBOARD_FRONTEND) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

dashboard-assets: $(DASHBOARD_BUNDLE) ## build the dashboard's browser bundle (uPlot + the pages) with npm

$(INSTALLED): pyproject.toml requirements.lock | $(DASHBOARD_BUNDLE)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or pass PYTHON=..." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,s3]'
	touch $@

install: $(INSTALLED) dashboard-assets ## create .venv and install the project with pinned dependencies

grafana-dashboards: $(INSTALLED) ## regenerate the Grafana dashboard ConfigMaps under manifests/base/monitoring/grafana
	$(BIN)/mlops dashboard grafana --out manifests/base/monitoring/grafana

demo: $(INSTALLED) ## run the whole loop locally, no cluster (ROWS=20000)
	$(BIN)/mlops demo --rows $(ROWS)

test: $(INSTALLED) lint ## lint, then run every test this machine can run
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## the quick tests only (no kfp.local runs, model servers, clusters or Docker)
	$(BIN)/python -m pytest -m "not slow and not apiserver and not docker and not cluster" $(PYTEST_ARGS)

lint: $(INSTALLED) kubeconform ## ruff; import-linter: imports run one way (CLI -> demo -> control plane -> serving | pipelines -> components -> core); mypy; kubeconform over the rendered manifests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	KUBERNETES_VERSION=$(KUBERNETES_VERSION) GATEWAY_API_VERSION=$(GATEWAY_API_VERSION) \
	  PROMETHEUS_OPERATOR_VERSION=$(PROMETHEUS_OPERATOR_VERSION) KSERVE_SOURCE_COMMIT=$(KSERVE_SOURCE_COMMIT) \
	  $(BIN)/python hack/kubeconform/lint.py "$$(hack/kubeconform/build.sh)"

.PHONY: kubeconform
kubeconform: ## build the manifest linter (KUBECONFORM_VERSION) into ~/.cache/mlops-platform (needs Go)
	hack/kubeconform/build.sh

fmt: $(INSTALLED) ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The committed YAML names the release image (mlops-platform/components:<package version>), so it
# does not change with every commit; IMAGE=... compiles for another image (`make run` does that).
compile: $(INSTALLED) ## regenerate the compiled pipeline IR YAML under pipelines/ (IMAGE=...)
	$(BIN)/mlops pipeline compile $(if $(IMAGE),--image $(IMAGE))

lock: ## re-resolve requirements.lock from pyproject.toml (needs network)
	rm -rf /tmp/mlops-lock && $(PYTHON) -m venv /tmp/mlops-lock
	/tmp/mlops-lock/bin/pip install --quiet '.[dev,s3]'
	/tmp/mlops-lock/bin/pip freeze --exclude mlops-platform > requirements.lock

# Strict: a warning (a broken link or cross-reference, a page missing from the nav) fails the build.
# tests/docs builds the same way and runs every page's commands (part of `make test`).
docs: $(INSTALLED) ## build the documentation site (docs/ -> build/docs/index.html) in strict mode
	$(BIN)/python -m sphinx -E -W --keep-going -q -b html docs build/docs
	@echo "built build/docs/index.html"

clean: ## remove local state (registry, runs) but keep .venv
	rm -rf .mlops build *.egg-info

# --- benchmarks ---------------------------------------------------------------------------------
.PHONY: bench-pipeline
bench-pipeline: $(INSTALLED) ## local pipeline wall time at 10k/100k/1M rows: compute vs orchestration overhead
	nice $(BIN)/python benchmarks/bench_pipeline.py --rows $(or $(BENCH_ROWS),10000 100000 1000000)

.PHONY: bench-scale
bench-scale: $(INSTALLED) ## compute=local vs dask on 1 and 2 workers: training and batch rows/s, cluster start, break-even (docs/figures/scale.json)
	nice $(BIN)/python benchmarks/bench_scale.py

.PHONY: bench-batch
bench-batch: $(INSTALLED) ## batch scoring 1M Parquet rows end to end vs the Pipeline and raw inplace_predict
	nice $(BIN)/python benchmarks/bench_batch.py --rows $(or $(BENCH_ROWS),1000000)

# --- serving ------------------------------------------------------------------------------------
.PHONY: serve bench-serving
MLSERVER_VERSION ?= 1.7.1
MLSERVER_VENV ?= .venv-mlserver
# MLServer is only a benchmark peer: it lives in its own venv, never in .venv. uvloop is held at
# 0.21 because MLServer 1.7.1's inference workers call asyncio.get_event_loop() at start-up,
# which uvloop >= 0.22 refuses.
$(MLSERVER_VENV)/.installed:
	test -x $(MLSERVER_VENV)/bin/python || $(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/python -m pip install --quiet "mlserver==$(MLSERVER_VERSION)" \
	  "mlserver-sklearn==$(MLSERVER_VERSION)" "scikit-learn==1.9.1" "xgboost-cpu==3.2.0" \
	  "numpy==2.4.6" "uvloop==0.21.0"
	touch $@

# After `make demo`: make serve REGISTRY=.mlops/demo/registry (the demo prints the line).
serve: $(INSTALLED) ## serve a registry's champion on :8080 (REGISTRY=.mlops/registry, MODEL=churn)
	$(BIN)/mlops serve $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(MODEL),--model $(MODEL))

# wrk (the load generator) comes from Debian; the package lists may be empty on a fresh machine.
bench-serving: $(INSTALLED) $(MLSERVER_VENV)/.installed ## predictor vs MLServer vs in-process predict, and by entity key vs full rows (wrk load)
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	nice $(BIN)/python benchmarks/bench_serving.py --mlserver $(MLSERVER_VENV)/bin/mlserver


# --- canary -------------------------------------------------------------------------------------
.PHONY: bench-canary canary store prometheus
bench-canary: $(INSTALLED) ## simulated rollouts: false rollbacks and requests to detection, engine vs fixed thresholds
	nice $(BIN)/python benchmarks/bench_canary.py

.PHONY: bench-experiments
bench-experiments: $(INSTALLED) ## bandit vs fixed split vs epsilon-greedy, delayed labels: regret, false winners, floor; the shadow tee's p99 cost
	nice $(BIN)/python -m benchmarks.bench_experiments --out docs/figures/bench_experiments.json --docs docs/experiments.md

# The registry the cluster's pipeline steps write to (pipelines/training.py ObjectStore; the
# canary controller's MLOPS_REGISTRY_URI): `make canary` resolves VERSION there.
CLUSTER_REGISTRY_URI ?= s3://mlpipeline/registry
canary: $(INSTALLED) ## on the cluster: roll VERSION out as a canary (or resume it); the analysis promotes or rolls it back (POLICY=file)
	@MLOPS=$(BIN)/mlops CLUSTER_REGISTRY_URI=$(CLUSTER_REGISTRY_URI) POLICY="$(POLICY)" MODEL="$(MODEL)" hack/canary.sh "$(VERSION)"

store: $(INSTALLED) ## run CMD with the cluster's object store at hand (port-forward, credentials, MLOPS_REGISTRY_URI)
	@$(BIN)/python hack/with_store.py "$(CMD)"

prometheus: ## build the pinned Prometheus server the canary source tests query (needs Go)
	hack/prometheus/build.sh

# --- images and cluster -------------------------------------------------------------------------
# CLUSTER=kind (default) or minikube; every upstream version comes from versions.mk.
# LOCAL_ENV=<file>: switch `cluster`, `deploy` and `kind-load` to local builds of every upstream
# image (machines without a registry; `make offline-build` writes the file). Unset, a laptop pulls
# the release images and applies the release manifests.
CLUSTER ?= kind
CLUSTER_NAME ?= mlops
KIND ?= kind
KFP_HOST ?= http://localhost:8887
RUN_ARGS ?=
export ARGO_WORKFLOWS_VERSION ML_METADATA_VERSION
LOCAL_ENV ?=
DEPLOY_STEPS ?= all
ifneq ($(LOCAL_ENV),)
include $(LOCAL_ENV)
export $(shell sed -n 's/=.*//p' $(LOCAL_ENV))
endif
# The tag the committed pipeline YAML names (components/kfp_components.py): `make images` tags it
# too, so a pipeline uploaded from the golden YAML runs the image `make kind-load` loaded.
PACKAGE_VERSION := $(shell sed -nE 's/^version = "([^"]+)"/\1/p' pyproject.toml)
RELEASE_COMPONENT_IMAGE := mlops-platform/components:$(PACKAGE_VERSION)
RELEASE_SERVING_IMAGE := mlops-platform/serving:$(PACKAGE_VERSION)
export CLUSTER CLUSTER_NAME KIND KIND_VERSION KIND_NODE_IMAGE MINIKUBE_KUBERNETES_VERSION KSERVE_VERSION \
  KFP_VERSION PROMETHEUS_OPERATOR_VERSION GATEWAY_API_VERSION TRAEFIK_VERSION SEAWEEDFS_IMAGE_TAG

.PHONY: wheelhouse images kind-load offline-build cluster cluster-delete deploy undeploy status run materialize

wheelhouse: $(INSTALLED) $(DASHBOARD_BUNDLE) ## prepare build/ (runtime wheels + project wheel) for offline image builds
	PYTHON_BIN=$(BIN)/python hack/wheelhouse.sh

images: wheelhouse ## build the component, serving and online store (Redis) images, tagged by git revision and package version (BASE_IMAGE=...)
	docker build -f docker/components.Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(COMPONENT_IMAGE) -t $(RELEASE_COMPONENT_IMAGE) .
	docker build -f docker/serving.Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(SERVING_IMAGE) -t $(RELEASE_SERVING_IMAGE) .
	docker build -f docker/online-store.Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) -t $(ONLINE_STORE_IMAGE) .
	@echo "built $(COMPONENT_IMAGE) $(SERVING_IMAGE) $(ONLINE_STORE_IMAGE) (also $(RELEASE_COMPONENT_IMAGE) $(RELEASE_SERVING_IMAGE))"

kind-load: ## load the images into the cluster (kind, or minikube with CLUSTER=minikube)
	@if [ "$(CLUSTER)" = minikube ]; then \
	  for i in $(COMPONENT_IMAGE) $(SERVING_IMAGE) $(ONLINE_STORE_IMAGE) $(RELEASE_COMPONENT_IMAGE) $(RELEASE_SERVING_IMAGE); do minikube -p $(CLUSTER_NAME) image load $$i || exit 1; done; \
	else \
	  $(KIND) load docker-image --name $(CLUSTER_NAME) $(COMPONENT_IMAGE) $(SERVING_IMAGE) $(ONLINE_STORE_IMAGE) $(RELEASE_COMPONENT_IMAGE) $(RELEASE_SERVING_IMAGE); \
	fi

offline-build: ## build every upstream image here (no registry needed); prints the LOCAL_ENV file
	hack/kind/build.sh

cluster: ## create a laptop cluster (kind-config.yaml; needs ~8 GiB for Docker)
	@hack/cluster.sh create

cluster-delete: ## delete the laptop cluster
	hack/cluster.sh delete

# The deploy runs on the project's venv Python (PyYAML); it checks its other tools (kubectl, jq,
# openssl) before any work and names what is missing on one line.
deploy: $(INSTALLED) ## install Gateway API+Traefik, KServe (Standard), SeaweedFS, KFP, Prometheus, the project (OVERLAY=...)
	@PYTHON=$(CURDIR)/$(BIN)/python SERVING_IMAGE=$(SERVING_IMAGE) COMPONENT_IMAGE=$(COMPONENT_IMAGE) ONLINE_STORE_IMAGE=$(ONLINE_STORE_IMAGE) hack/deploy.sh $(DEPLOY_STEPS)

undeploy: ## remove the project's part (its InferenceServices and manifests); add-ons stay
	-kubectl delete inferenceservices -n mlops -l app.kubernetes.io/part-of=mlops-platform --ignore-not-found --wait
	kubectl delete -k $${OVERLAY:-manifests/overlays/dev} --ignore-not-found --wait

status: ## what runs on the cluster, and the port-forwards to reach KFP, Prometheus and the models
	hack/status.sh

run: $(INSTALLED) ## compile the pipeline for the current image tag and submit it to KFP (KFP_HOST=...)
	$(BIN)/mlops pipeline submit --image $(COMPONENT_IMAGE) --serving-image $(SERVING_IMAGE) --host $(KFP_HOST) $(RUN_ARGS)

materialize: $(INSTALLED) ## run the feature materialization pipeline once on KFP for the current image tag, and wait (KFP_HOST=...)
	$(BIN)/mlops features submit --image $(COMPONENT_IMAGE) --host $(KFP_HOST) --wait $(MATERIALIZE_ARGS)

# --- Kubeflow Pipelines built here (hack/kfp/) ------------------------------------------------------
.PHONY: kfp-images kfp-install upload test-kfp
kfp-images: ## build KFP, Argo, MariaDB, the MLMD server and the UI images from ../shared/upstream/kfp (cached)
	hack/kfp/build-images.sh all

kfp-install: ## install KFP on the current cluster (the kfp-images builds when all exist, else the release images)
	hack/kfp/install.sh install

upload: $(INSTALLED) ## register pipelines/training.yaml in KFP (KFP_HOST=...): a new version when it changed
	$(BIN)/python hack/kfp/upload.py --host $(KFP_HOST) pipelines/training.yaml

test-kfp: $(INSTALLED) ## the KFP tests (marker kfp): builds the images first when their cache is cold
	hack/kfp/build-images.sh all
	MLOPS_KFP=1 $(BIN)/python -m pytest -m kfp tests/kfp $(PYTEST_ARGS)

# --- monitoring ---------------------------------------------------------------------------------
.PHONY: bench-drift monitor-check
# Evidently is only a benchmark peer; its dependency tree conflicts with ours, so it gets its own venv.
EVIDENTLY_VERSION := 0.7.23
EVIDENTLY_VENV := .venv-evidently

$(EVIDENTLY_VENV)/.installed:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found" >&2; exit 1; }
	test -x $(EVIDENTLY_VENV)/bin/python || $(PYTHON) -m venv $(EVIDENTLY_VENV)
	$(EVIDENTLY_VENV)/bin/python -m pip install --quiet "evidently==$(EVIDENTLY_VERSION)" "pandas==2.3.3"
	touch $@

bench-drift: $(INSTALLED) $(EVIDENTLY_VENV)/.installed ## drift on 1M rows x 20 features, monitor latency per request, vs Evidently
	nice $(BIN)/python benchmarks/bench_drift.py --out build/bench_drift.json

monitor-check: $(INSTALLED) ## drift of a data file vs the champion's reference (DATA=path.csv|parquet)
	$(BIN)/mlops monitor check $(DATA)

# --- kube-apiserver test harness ----------------------------------------------------------------
.PHONY: apiserver test-apiserver

apiserver: ## build kube-apiserver + etcd (KUBERNETES_VERSION, ETCD_VERSION) into ~/.cache, or reuse them
	bash hack/kube-apiserver/build.sh

test-apiserver: $(INSTALLED) ## run the tests against a real kube-apiserver + etcd (builds them on first use)
	$(BIN)/python -m pytest -m apiserver tests/apiserver $(PYTEST_ARGS)
