"""The traffic-actuator interface: how a rollout moves traffic between stable and canary, and
`new_actuator`, the one place that chooses an implementation (as Flagger's providers/factory.go):
`KubernetesActuator` (the InferenceService, through components/isvc_traffic.py) or
`LocalActuator` (the local router). The rollout loop, `mlops canary`, the demo and the in-cluster
controller only see this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from mlops_core.errors import MlopsError
from serving.canary.analysis import CanaryDecision


class ActuatorError(MlopsError):
    """The platform refused or could not apply a traffic change."""


@dataclass(frozen=True)
class TrafficStatus:
    model: str
    stable_version: str | None
    canary_version: str | None
    canary_percent: int  # what was asked for
    observed_canary_percent: int | None  # what the platform reports it does (None: not yet known)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.canary_version is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrafficActuator(Protocol):
    def status(self) -> TrafficStatus: ...

    def start(self, version: str, percent: int) -> TrafficStatus:
        """Deploy `version` as the canary and send it `percent` of the traffic."""
        ...

    def set_canary_percent(self, percent: int) -> TrafficStatus: ...

    def promote(self) -> TrafficStatus:
        """All traffic to the canary, which becomes the stable version."""
        ...

    def rollback(self) -> TrafficStatus:
        """All traffic back to the stable version."""
        ...

    def record(self, decision: CanaryDecision, status: TrafficStatus) -> None:
        """Leave the decision where an operator looks (events, annotations, logs)."""
        ...

    def record_event(self, action: str, message: str, summary: dict[str, Any]) -> None:
        """Record something that is not an analysis decision (a start, a manual promotion)."""
        ...


class Target(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


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
    confirm_timeout_s: float = 120.0,
    mode: str = "auto",
) -> TrafficActuator:
    """The actuator for `target`. Kubernetes: `api_client`, or credentials found the one way
    (components/kube_client.py); a version's storage URI comes from the registry."""
    target = Target(target)
    if target is Target.local:
        from serving.canary.local_actuator import LocalActuator

        if not router_url:
            raise ActuatorError("the local target needs the router's URL")
        return LocalActuator(router_url)
    from components.kube_client import load_api_client
    from mlops_core.registry import ModelRegistry
    from serving.canary.kubernetes_actuator import KubernetesActuator

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
