"""The pipeline's deploy step: create or update the model's InferenceService through the Kubernetes
API.

The first version goes live at 100%. A later champion replaces the predictor spec with
`canaryTrafficPercent` set to the first rollout step, so KServe (serverless) sends that share to the
new revision and keeps the rest on the last ready one; the canary analysis then promotes or rolls
back. Re-running with the version and image already served changes nothing. The Kubernetes client is
injected (an `ApiClient`), so the same code runs in a pipeline pod (in-cluster config), from a
laptop (kubeconfig) and against a test API server.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from components.inference_service import (
    GROUP,
    PLURAL,
    PREDICTOR_CONTAINER,
    VERSION,
    InferenceServiceSpec,
    build_inference_service,
    storage_uri_of,
)
from mlops_core.errors import MlopsError


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
    canary_percent: int = 10,
) -> DeployResult:
    """Create the InferenceService at 100%, or roll a new model version out as a canary.

    `spec.canary_traffic_percent` is ignored: this function decides it (none on create,
    `canary_percent` on update).
    """
    if not 0 < canary_percent < 100:
        raise DeployError(f"canary_percent must be between 1 and 99, got {canary_percent}")
    api = client.CustomObjectsApi(api_client)
    existing = _get(api, spec.name, spec.namespace)
    if existing is None:
        body = build_inference_service(_with_canary(spec, None))
        _call(
            "create",
            spec,
            lambda: api.create_namespaced_custom_object(
                GROUP, VERSION, spec.namespace, PLURAL, body
            ),
        )
        return _result("created", spec, None, None)

    previous_uri = storage_uri_of(existing)
    # A new serving image is a change to roll out carefully too, even for the same model.
    if previous_uri == spec.storage_uri and _image_of(existing) == spec.image:
        served_pct = existing["spec"]["predictor"].get("canaryTrafficPercent")
        return _result("unchanged", spec, served_pct, previous_uri)
    body = build_inference_service(_with_canary(spec, canary_percent))
    # A merge patch replaces the predictor's lists (containers) whole: the spec is ours entirely.
    _call(
        "patch",
        spec,
        lambda: api.patch_namespaced_custom_object(
            GROUP, VERSION, spec.namespace, PLURAL, spec.name, body
        ),
    )
    return _result("canary", spec, canary_percent, previous_uri)


def deploy_step(
    *,
    register_result: dict[str, Any],
    enabled: bool,
    serving_image: str,
    namespace: str,
    service_name: str,
    canary_percent: int,
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
    )
    result = deploy_model(
        spec, api_client=api_client or api_client_from_environment(), canary_percent=canary_percent
    )
    return result.to_dict()


def api_client_from_environment() -> client.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: the current kubeconfig context."""
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except config.ConfigException as e:
            raise DeployError(
                "no Kubernetes credentials: not in a pod, and no usable kubeconfig "
                "(KUBECONFIG or ~/.kube/config)"
            ) from e
    return client.ApiClient()


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
    """Wait for the InferenceService's Ready condition and return its status (with the traffic
    split in status.components.predictor.traffic)."""
    api = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while True:
        obj = _get(api, name, namespace)
        if obj is None:
            raise DeployError(f"InferenceService {namespace}/{name} does not exist")
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


def _image_of(body: dict[str, Any]) -> str | None:
    for container in body.get("spec", {}).get("predictor", {}).get("containers", []):
        if container.get("name") == PREDICTOR_CONTAINER:
            return container.get("image")
    return None


def _with_canary(spec: InferenceServiceSpec, pct: int | None) -> InferenceServiceSpec:
    return replace(spec, canary_traffic_percent=pct)


def _get(api: client.CustomObjectsApi, name: str, namespace: str) -> dict[str, Any] | None:
    try:
        return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise DeployError(
            f"cannot read InferenceService {namespace}/{name}: {e.status} {e.reason}"
        ) from e
    except TransportError as e:
        raise DeployError(
            f"cannot read InferenceService {namespace}/{name}: the Kubernetes API at "
            f"{api.api_client.configuration.host} is unreachable ({e})"
        ) from e


def _call(verb: str, spec: InferenceServiceSpec, fn: Any) -> None:
    try:
        fn()
    except ApiException as e:
        hint = (
            " (the deploy step's ServiceAccount needs the inferenceservice-deployer Role: "
            "make deploy applies it)"
            if e.status == 403
            else ""
        )
        raise DeployError(
            f"cannot {verb} InferenceService {spec.namespace}/{spec.name}: "
            f"{e.status} {e.reason}{hint}: {e.body}"
        ) from e
    except TransportError as e:
        raise DeployError(
            f"cannot {verb} InferenceService {spec.namespace}/{spec.name}: "
            f"the Kubernetes API is unreachable ({e})"
        ) from e


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
