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

from mlops_control.rollout.analysis import CanaryDecision
from mlops_core.errors import MlopsError


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
