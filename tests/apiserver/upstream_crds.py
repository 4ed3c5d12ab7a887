"""CustomResourceDefinitions of the pinned upstream releases, read at test time (nothing copied
into this repository).

- prometheus-operator (PodMonitor, ServiceMonitor, Prometheus, PrometheusRule, ...): the CRD files of
  the release pinned as PROMETHEUS_OPERATOR_VERSION in versions.mk, from its Go module
  (`go mod download`, the module cache, example/prometheus-operator-crd/).
- Gateway API (HTTPRoute, ...): the standard-channel CRD files of GATEWAY_API_VERSION, from its Go
  module (config/crd/standard/).
- KServe InferenceService: the real CRD file, `config/crd/full/serving.kserve.io_inferenceservices.yaml`
  of the KServe source at KSERVE_SOURCE_COMMIT (../shared/upstream/kserve; the module proxy refuses
  KServe's module), with its enums, required lists, defaults and CEL rules.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.apiserver.control_plane import go_binary, pinned_version
from tests.upstream import kserve_file

INFERENCESERVICE_CRD = "config/crd/full/serving.kserve.io_inferenceservices.yaml"
CLUSTER_STORAGE_CONTAINER_CRD = (
    "config/crd/full/clusterstoragecontainer/serving.kserve.io_clusterstoragecontainers.yaml"
)
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
GATEWAY_API_MODULE = "sigs.k8s.io/gateway-api"


class CRDSourceError(RuntimeError):
    """A pinned upstream CRD could not be obtained."""


@cache
def go_module_dir(module: str, version: str) -> Path:
    go = go_binary()
    if go is None:
        raise CRDSourceError(f"Go is needed to fetch {module}@{version} from the module proxy")
    done = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Dir" not in info:
        raise CRDSourceError(
            f"go mod download {module}@{version} failed: {info.get('Error') or done.stderr}"
        )
    return Path(info["Dir"])


class _CRDLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.1's `=` (value) tag as a plain string, as Go's YAML does;
    prometheus-operator's CRDs list "=" among their enum values."""


_CRDLoader.add_constructor("tag:yaml.org,2002:value", _CRDLoader.construct_yaml_str)


def prometheus_operator_crds(kinds: set[str]) -> list[dict[str, Any]]:
    """The CRDs of the pinned prometheus-operator release that define `kinds`."""
    directory = (
        go_module_dir(PROMETHEUS_OPERATOR_MODULE, pinned_version("PROMETHEUS_OPERATOR_VERSION"))
        / "example"
        / "prometheus-operator-crd"
    )
    files = sorted(directory.glob("monitoring.coreos.com_*.yaml"))
    if not files:
        raise CRDSourceError(f"no CRD files in {directory}")
    crds = [yaml.load(f.read_text(), Loader=_CRDLoader) for f in files]
    found = [crd for crd in crds if crd["spec"]["names"]["kind"] in kinds]
    missing = kinds - {crd["spec"]["names"]["kind"] for crd in found}
    if missing:
        raise CRDSourceError(f"prometheus-operator has no CRD for {sorted(missing)} in {directory}")
    return found


def gateway_api_crds(kinds: set[str]) -> list[dict[str, Any]]:
    """The standard-channel CRDs of the pinned Gateway API release that define `kinds`."""
    directory = (
        go_module_dir(GATEWAY_API_MODULE, pinned_version("GATEWAY_API_VERSION"))
        / "config"
        / "crd"
        / "standard"
    )
    # The directory also holds a ValidatingAdmissionPolicy file (several documents): CRDs only.
    docs = [d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    crds = [d for d in docs if d and d.get("kind") == "CustomResourceDefinition"]
    found = [crd for crd in crds if crd["spec"]["names"]["kind"] in kinds]
    missing = kinds - {crd["spec"]["names"]["kind"] for crd in found}
    if missing:
        raise CRDSourceError(
            f"Gateway API has no standard CRD for {sorted(missing)} in {directory}"
        )
    return found


def kserve_inferenceservice_crd() -> dict[str, Any]:
    """The InferenceService CRD (serving.kserve.io/v1beta1) as KServe ships it at the pinned commit."""
    return yaml.safe_load(kserve_file(INFERENCESERVICE_CRD))


def kserve_cluster_storage_container_crd() -> dict[str, Any]:
    """The ClusterStorageContainer CRD (serving.kserve.io/v1alpha1): manifests/base has one."""
    return yaml.safe_load(kserve_file(CLUSTER_STORAGE_CONTAINER_CRD))
