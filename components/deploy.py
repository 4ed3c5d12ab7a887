"""The pipeline's deploy step: create or update the model's InferenceService through the Kubernetes
API.

The first version goes live at 100% and is recorded as the stable one. A later champion goes out
as a canary at `canary_percent` through the one traffic-state writer (components/isvc_traffic.py),
which records the stable version, its storage URI and the canary version exactly as the canary
actuator and the in-cluster controller read them; the canary analysis then promotes or rolls
back. Re-running with the version and image already served changes nothing. The Kubernetes client
is injected (an `ApiClient`), so the same code runs in a pipeline pod (in-cluster config), from a
laptop (kubeconfig) and against a test API server.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from components.inference_service import InferenceServiceSpec, build_inference_service
from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_FIRST_CANARY_PERCENT

if TYPE_CHECKING:
    from kubernetes import client

# The Kubernetes client (~0.4 s of imports) is imported where a cluster is really called: a local
# run's deploy step is skipped (deploy=False), and the local task fork server preloads this module.


class DeployError(MlopsError):
    """The InferenceService could not be created, updated or confirmed."""


Action = Literal["created", "canary", "unchanged", "skipped"]


@dataclass(frozen=True)
class DeployResult:
    action: Action
    name: str
    namespace: str
    model_version: str
    storage_uri: str
    canary_traffic_percent: int | None
    previous_storage_uri: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deploy_model(
    spec: InferenceServiceSpec,
    *,
    api_client: client.ApiClient,
    canary_percent: int = DEFAULT_FIRST_CANARY_PERCENT,
) -> DeployResult:
    """Create the InferenceService at 100%, or roll a new model version out as a canary.

    `spec.canary_traffic_percent` is ignored: this function decides it (none on create,
    `canary_percent` on update).
    """
    if not 0 < canary_percent < 100:
        raise DeployError(f"canary_percent must be between 1 and 99, got {canary_percent}")
    from components.isvc_traffic import (
        InferenceServiceWriter,
        image_in,
        newest_predictor,
        storage_uri_in,
    )

    writer = InferenceServiceWriter(api_client, spec.name, spec.namespace)
    body = build_inference_service(spec)
    try:
        existing = writer.find()
        if existing is None:
            writer.create(body)
            return _result("created", spec, None, None)
        mode = writer.mode(existing)
        served = newest_predictor(existing, mode)
        # A new serving image is a change to roll out carefully too, even for the same model.
        if (storage_uri_in(served), image_in(served)) == (spec.storage_uri, spec.image):
            return _result("unchanged", spec, mode.canary_percent(existing), storage_uri_in(served))
        previous = storage_uri_in(served)
        writer.start_canary(spec.model_version, canary_percent, predictor=body["spec"]["predictor"])
    except MlopsError as e:
        raise DeployError(str(e)) from e
    return _result("canary", spec, canary_percent, previous)


def deploy_step(
    *,
    register_result: dict[str, Any],
    enabled: bool,
    serving_image: str,
    namespace: str,
    service_name: str,
    canary_percent: int,
    feature_server_url: str,
    api_client: client.ApiClient | None = None,
) -> dict[str, Any]:
    """The pipeline's last step: serve the registered version if the gate made it champion.

    `register_result` is the register step's output (promoted, version, uri, model). Without an
    `api_client`, the pod's in-cluster ServiceAccount is used (or the local kubeconfig).
    """
    version = str(register_result["version"])
    if not enabled:
        return _skipped(register_result, "deploy=False: the pipeline was run without deploying")
    if not register_result["promoted"]:
        return _skipped(register_result, f"v{version} did not pass the gate; nothing to deploy")
    if not serving_image:
        raise DeployError("serving_image is empty: pass the serving image (make run does)")
    spec = InferenceServiceSpec(
        name=service_name,
        namespace=namespace,
        image=serving_image,
        storage_uri=register_result["uri"],
        model_name=register_result["model"],
        model_version=version,
        feature_server_url=feature_server_url,
    )
    if api_client is None:
        from components.kube_client import load_api_client

        api_client = load_api_client()
    result = deploy_model(spec, api_client=api_client, canary_percent=canary_percent)
    return result.to_dict()


def _skipped(register_result: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "action": "skipped",
        "reason": reason,
        "model_version": str(register_result["version"]),
        "storage_uri": register_result.get("uri"),
    }


def wait_until_ready(
    name: str,
    namespace: str,
    *,
    api_client: client.ApiClient,
    timeout_s: float,
    poll_s: float = 5.0,
) -> dict[str, Any]:
    """Wait for the InferenceService's Ready condition and return its status (the canary split:
    status.canaryStatuses in Standard mode, status.components.predictor.traffic in Knative mode)."""
    from components.isvc_traffic import InferenceServiceWriter

    writer = InferenceServiceWriter(api_client, name, namespace)
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while True:
        try:
            obj = writer.read()
        except MlopsError as e:
            raise DeployError(str(e)) from e
        status = obj.get("status", {})
        conditions = {c.get("type"): c for c in status.get("conditions", [])}
        ready = conditions.get("Ready", {})
        if ready.get("status") == "True":
            return status
        if time.monotonic() >= deadline:
            raise DeployError(
                f"InferenceService {namespace}/{name} not Ready after {timeout_s:.0f}s: "
                f"{ready.get('reason', 'no Ready condition yet')}: {ready.get('message', '')}; "
                f"see `kubectl describe inferenceservice {name} -n {namespace}`"
            )
        time.sleep(poll_s)


def _result(
    action: Action, spec: InferenceServiceSpec, pct: int | None, previous: str | None
) -> DeployResult:
    return DeployResult(
        action=action,
        name=spec.name,
        namespace=spec.namespace,
        model_version=spec.model_version,
        storage_uri=spec.storage_uri,
        canary_traffic_percent=pct,
        previous_storage_uri=previous,
    )
