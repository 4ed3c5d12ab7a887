"""What the in-cluster controller and the retraining trigger do to an InferenceService, and all
they do: change its traffic and its state in one patch guarded by the resourceVersion their
decision was made from, and record an Event.

One patch, because a traffic change and the state that led to it must land together or not at
all: a controller killed between two writes would otherwise resume from a state that does not
match the traffic (and step up twice). Guarded, because a decision made on an object that has
changed since it was read is stale: the write fails (`TrafficStateError`) and the next pass reads
the object again and decides again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubernetes import client

from components import isvc_traffic as traffic
from components.isvc_release import ReleaseStage, stage_patch
from mlops_control.traffic.kubernetes_actuator import emit_event

# "release": a stage of a staged promotion or rollback (components/isvc_release.py).
TrafficChange = Literal["keep", "set_percent", "promote", "rollback", "release"]
Values = dict[str, str | None]  # None removes the key


@dataclass(frozen=True)
class Change:
    """One patch: a traffic change (or none) with the annotations and labels to set or remove."""

    traffic: TrafficChange = "keep"
    percent: int | None = None  # for set_percent
    annotations: Values = field(default_factory=dict)
    labels: Values = field(default_factory=dict)
    stage: ReleaseStage | None = None  # for release
    # False for a record of what has already happened (a KFP run started): it must land whatever
    # changed since the read, or the fact is lost; only a decision is void on a changed object.
    guarded: bool = True

    def __post_init__(self) -> None:
        if not self.guarded and self.traffic != "keep":
            raise ValueError("a traffic change is a decision: it is always guarded")
        if (self.traffic == "set_percent") != (self.percent is not None):
            raise ValueError("a percent goes with set_percent, and only with it")
        if (self.traffic == "release") != (self.stage is not None):
            raise ValueError("a stage goes with release, and only with it")


class InferenceServiceChanges(Protocol):
    def apply(self, isvc: dict[str, Any], change: Change) -> dict[str, Any]:
        """Write `change` in one patch, guarded by `isvc`'s resourceVersion (the object the
        decision was made from) unless `change.guarded` is False; returns the object written.
        Raises `TrafficStateError` when it changed since, `InferenceServiceWriteError` when the
        API refused."""
        ...

    def event(self, isvc: dict[str, Any], action: str, message: str) -> None:
        """Record a core/v1 Event on it (reason from `action`)."""
        ...

    def route(self, isvc: dict[str, Any]) -> dict[str, Any] | None:
        """KServe's HTTPRoute for it, or None where it has none (what a release stage waits on)."""
        ...


def change_patch(isvc: dict[str, Any], mode: traffic.TrafficMode, change: Change) -> dict[str, Any]:
    """The one merge patch that makes `change` on `isvc` (carrying its resourceVersion)."""
    if change.traffic == "set_percent":
        assert change.percent is not None  # checked by Change
        patch = mode.percent_patch(isvc, change.percent)
    elif change.traffic == "promote":
        patch = mode.promote_patch(isvc)
    elif change.traffic == "rollback":
        patch = mode.rollback_patch(isvc)
    elif change.traffic == "release":
        assert change.stage is not None  # checked by Change
        patch = stage_patch(isvc, mode, change.stage)
    else:
        patch = {"metadata": {"resourceVersion": isvc["metadata"]["resourceVersion"]}}
    # Set on the patch as is, not merged: a None is a removal the API server must see.
    meta = patch.setdefault("metadata", {})
    for key, values in (("annotations", change.annotations), ("labels", change.labels)):
        if values:
            meta[key] = {**(meta.get(key) or {}), **values}
    return patch


@dataclass
class KubernetesChanges:
    """`InferenceServiceChanges` through the Kubernetes API and the one traffic-state writer."""

    api_client: client.ApiClient
    reporting_component: str = "mlops.platform/canary-controller"

    def apply(self, isvc: dict[str, Any], change: Change) -> dict[str, Any]:
        meta = isvc["metadata"]
        writer = traffic.InferenceServiceWriter(self.api_client, meta["name"], meta["namespace"])
        return writer.apply(
            lambda cur, mode: change_patch(cur, mode, change),
            based_on=meta["resourceVersion"] if change.guarded else None,
        )

    def route(self, isvc: dict[str, Any]) -> dict[str, Any] | None:
        meta = isvc["metadata"]
        return traffic.InferenceServiceWriter(
            self.api_client, meta["name"], meta["namespace"]
        ).route()

    def event(self, isvc: dict[str, Any], action: str, message: str) -> None:
        emit_event(
            client.CoreV1Api(self.api_client), isvc, action, message, self.reporting_component
        )
