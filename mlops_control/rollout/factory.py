"""Which actuator and which metrics source a rollout uses: one factory for each interface, chosen by
target (`local`: the router and the model servers' /metrics; `kubernetes`: the InferenceService and
Prometheus), as Flagger's providers/factory.go chooses a metrics provider. The interfaces
(`actuator.py`, `source.py`) import no implementation, so the implementations can import them.
"""

from __future__ import annotations

from typing import Any

from components.kube_client import load_api_client
from mlops_control.rollout.prometheus_source import PrometheusSource
from mlops_control.rollout.scrape_source import ScrapeSource
from mlops_control.rollout.source import MetricsSource
from mlops_control.traffic.actuator import ActuatorError, Target, TrafficActuator, TrafficStatus
from mlops_control.traffic.kubernetes_actuator import KubernetesActuator
from mlops_control.traffic.local_actuator import LocalActuator
from mlops_core.registry import ModelRegistry
from mlops_core.settings import DEFAULT_CONFIRM_TIMEOUT_S


def new_actuator(
    target: Target | str,
    *,
    model: str,
    router_url: str = "",
    namespace: str = "",
    isvc: str | None = None,
    registry_uri: str = "",
    api_client: Any = None,
    context: str | None = None,
    confirm_timeout_s: float = DEFAULT_CONFIRM_TIMEOUT_S,
    mode: str = "auto",
) -> TrafficActuator:
    """The actuator for `target`. Kubernetes: `api_client`, or credentials found the one way
    (components/kube_client.py); a version's storage URI comes from the registry."""
    target = Target(target)
    if target is Target.local:
        if not router_url:
            raise ActuatorError("the local target needs the router's URL")
        return LocalActuator(router_url)
    registry = ModelRegistry(registry_uri) if registry_uri else None

    def storage_uri_for(version: str) -> str:
        if registry is None:
            raise ActuatorError("starting a canary on the cluster needs the registry's URI")
        return registry.version_uri(model, int(version))

    return KubernetesActuator(
        api_client=api_client or load_api_client(context),
        name=isvc or model,
        namespace=namespace,
        storage_uri_for=storage_uri_for,
        confirm_timeout_s=confirm_timeout_s,
        mode=mode,
    )


def new_source(
    target: Target | str,
    *,
    status: TrafficStatus | None = None,
    prometheus_url: str = "",
    selector: str = "",
    pods: tuple[str, str] | None = None,
) -> MetricsSource:
    """Kubernetes: Prometheus at `prometheus_url` (with `pods`, or the `status`'s, where only
    the pods tell the stable from the canary); local: the two model servers the local router's
    `status` names."""
    if str(target) == "local":
        if status is None:
            raise ActuatorError("the local source needs the router's status (its servers' URLs)")
        return ScrapeSource(status.detail["stable_url"], status.detail["canary_url"])
    if pods is None and status is not None:
        pods = status.detail.get("pods")
    return PrometheusSource(prometheus_url, selector=selector, pods=pods)
