"""CustomResourceDefinitions of the pinned upstream releases, obtained at test time (nothing copied
into this repository).

- prometheus-operator (PodMonitor, ServiceMonitor, Prometheus, PrometheusRule, ...): the CRD files of
  the release pinned as PROMETHEUS_OPERATOR_VERSION in versions.mk, from its Go module
  (`go mod download`, the module cache, example/prometheus-operator-crd/).
- KServe InferenceService: KServe's Go module is not served by the module proxy this machine reaches
  (it answers 403 for github.com/kserve/kserve) and GitHub release files are unreachable, so the
  upstream CRD file cannot be fetched. The CRD is built from the OpenAPI models of the pinned KServe
  Python SDK instead (kserve==KSERVE_VERSION, generated from the same Go API types as the CRD):
  the same group/version/kind/plural, the same field names and types for spec and status, a status
  subresource. Field types the SDK does not model (Knative's traffic target, a few newer Kubernetes
  types) are left open (x-kubernetes-preserve-unknown-fields), as are int-or-string fields.
  What it lacks next to the upstream file: enums, required lists, defaults and CEL rules.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import kserve.models
import kubernetes.client.models
import yaml
from kserve.constants import constants as kserve_constants

from tests.apiserver.control_plane import go_binary, pinned_version

PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"


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


_SCALARS: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int64"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "datetime": {"type": "string", "format": "date-time"},
    "date": {"type": "string", "format": "date"},
    # The Kubernetes SDK types IntOrString and free-form fields as `object`.
    "object": {"x-kubernetes-preserve-unknown-fields": True},
}
_INT_OR_STRING = {"x-kubernetes-int-or-string": True}
_OPEN = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
# Types whose JSON form is a Kubernetes quantity or time, not an object.
_NAMED: dict[str, dict[str, Any]] = {
    "ResourceQuantity": _INT_OR_STRING,
    "V1beta1MetricQuantity": _INT_OR_STRING,
    "V1Time": {"type": "string", "format": "date-time"},
    "KnativeVolatileTime": {"type": "string", "format": "date-time"},
    "KnativeURL": {"type": "string"},
}
# Quantity maps that the Kubernetes SDK types as dict(str, str) (`cpu: 1` is valid YAML for them).
_QUANTITY_MAPS = {("V1ResourceRequirements", "limits"), ("V1ResourceRequirements", "requests")}


def _model(name: str) -> type | None:
    return getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name, None)


def _schema(type_name: str, stack: tuple[str, ...]) -> dict[str, Any]:
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    if type_name in _NAMED:
        return dict(_NAMED[type_name])
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        return {"type": "array", "items": _schema(match.group(1), stack)}
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        return {"type": "object", "additionalProperties": _schema(match.group(1), stack)}
    model = _model(type_name)
    if model is None or type_name in stack:  # unmodelled or recursive: leave it open
        return dict(_OPEN)
    properties = {}
    for attribute, attribute_type in model.openapi_types.items():
        json_name = model.attribute_map[attribute]
        if (type_name, json_name) in _QUANTITY_MAPS:
            properties[json_name] = {"type": "object", "additionalProperties": _INT_OR_STRING}
        else:
            properties[json_name] = _schema(attribute_type, (*stack, type_name))
    return {"type": "object", "properties": properties}


def kserve_inferenceservice_crd() -> dict[str, Any]:
    """The InferenceService CRD (serving.kserve.io/v1beta1) from the pinned KServe SDK's models."""
    pinned = pinned_version("KSERVE_VERSION").removeprefix("v")
    if installed_version("kserve") != pinned:
        raise CRDSourceError(
            f"kserve {installed_version('kserve')} is installed, versions.mk pins {pinned}"
        )
    group = kserve_constants.KSERVE_GROUP
    plural = kserve_constants.KSERVE_PLURAL_INFERENCESERVICE
    root = _schema("V1beta1InferenceService", ())
    properties = root["properties"]
    properties["metadata"] = {"type": "object"}  # the API server owns ObjectMeta's schema
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "annotations": {"mlops-platform/source": f"kserve=={pinned} Python SDK models"},
        },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "kind": kserve_constants.KSERVE_KIND_INFERENCESERVICE,
                "listKind": f"{kserve_constants.KSERVE_KIND_INFERENCESERVICE}List",
                "plural": plural,
                "singular": kserve_constants.KSERVE_KIND_INFERENCESERVICE.lower(),
                "shortNames": ["isvc"],
            },
            "versions": [
                {
                    "name": kserve_constants.KSERVE_V1BETA1_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }
