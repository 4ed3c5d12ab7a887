"""Promotion and rollback in stages, so that the gateway has a ready backend for every request.

KServe 0.21 Standard mode (read at KSERVE_SOURCE_COMMIT; pinned by tests/components/
test_isvc_release.py):
- the HTTPRoute's weighted backendRefs list only canaries that `status.canaryStatuses` reports
  ready (applyCanaryWeights, #5984), the stable backend taking the rest;
- a predictor.name change deletes the old stable Deployment and Service at once as orphans
  (reconcileCanaryDeployments), while the route may still send them their share; removing a
  canary entry does the same to the canary's;
- a canary may not share the stable predictor's name (validateCanarySpecs), so retargeting
  `predictor` and removing the entry are one write.

and the gateway (Traefik, TRAEFIK_VERSION) answers 500 for a backendRef whose Service is gone, at
that backendRef's weight, and never picks a weight-0 one. So a one-write promotion or rollback
loses the share of whichever backend vanishes before the route forgets it. In stages, each write waits until the route serves its result:

  promote   shift     canary entry at 100%: the route sends the stable backend weight 0
            retarget  predictor = the canary's spec (its name, so its Service is the one already
                      serving), entry removed: the old stable, at weight 0, goes
  rollback  drain     entry at 0% with its pods kept (minReplicas): the stable takes everything
            remove    entry removed: the canary, at weight 0, goes

A stage is written together with the record of it (the controller's rollout record), so a
process restarted mid-way resumes by checking whether the written stage is served yet. Knative
mode needs no stages (Knative shifts between revisions itself): one write, served at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from components.isvc_traffic import (
    TrafficMode,
    TrafficStateError,
    predictor_of,
    predictor_service,
)

Action = Literal["promote", "rollback"]
STAGES: dict[str, dict[Action, tuple[str, ...]]] = {
    "standard": {"promote": ("shift", "retarget"), "rollback": ("drain", "remove")},
    "serverless": {"promote": ("retarget",), "rollback": ("remove",)},
}
# KServe's condition on the InferenceService for the stable predictor (v1beta1.PredictorReady).
PREDICTOR_READY = "PredictorReady"


@dataclass(frozen=True)
class ReleaseStage:
    """A stage of a promotion or a rollback whose write has been made."""

    action: Action
    stage: str

    def __post_init__(self) -> None:
        # ValueError: a record that names neither is unreadable (records.py reads it as absent).
        if self.action not in ("promote", "rollback"):
            raise ValueError(f"a release is promote or rollback, not {self.action!r}")
        if not any(self.stage in by[self.action] for by in STAGES.values()):
            raise ValueError(f"{self.stage!r} is not a stage of {self.action}")

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "stage": self.stage}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ReleaseStage:
        action = str(doc["action"])
        if action not in ("promote", "rollback"):
            raise ValueError(f"a release is promote or rollback, not {action!r}")
        return cls("promote" if action == "promote" else "rollback", str(doc["stage"]))


def first_stage(mode: TrafficMode, action: Action) -> ReleaseStage:
    return ReleaseStage(action, STAGES[mode.name][action][0])


def next_stage(mode: TrafficMode, at: ReleaseStage) -> ReleaseStage | None:
    stages = STAGES[mode.name][at.action]
    if at.stage not in stages:
        raise TrafficStateError(f"{at.stage!r} is not a {mode.name}-mode stage of {at.action}")
    i = stages.index(at.stage)
    return ReleaseStage(at.action, stages[i + 1]) if i + 1 < len(stages) else None


def stage_patch(isvc: dict[str, Any], mode: TrafficMode, at: ReleaseStage) -> dict[str, Any]:
    """The one merge patch that enters `at` (carrying the object's resourceVersion)."""
    if at.stage == "retarget":
        return mode.promote_patch(isvc)
    if at.stage == "remove":
        return mode.rollback_patch(isvc)
    if mode.name != "standard":
        raise TrafficStateError(f"{at.stage!r} is a Standard-mode stage; this is {mode.name}")
    if at.stage == "shift":
        return mode.percent_patch(isvc, 100)
    drain = getattr(mode, "drain_patch", None)
    assert drain is not None  # StandardCanary's
    patch: dict[str, Any] = drain(isvc)
    return patch


@dataclass(frozen=True)
class Served:
    done: bool
    waiting_for: str = ""  # what is not there yet, for logs and events


def served(
    isvc: dict[str, Any], route: dict[str, Any] | None, mode: TrafficMode, at: ReleaseStage
) -> Served:
    """Is the stage's write served: KServe reconciled it into its status and (where a Gateway
    API route exists) the route and the gateway's acceptance of it? Without a route (no Gateway
    API) the status is all there is to check."""
    if mode.name != "standard":
        return Served(True)
    name = isvc["metadata"]["name"]
    entries = isvc.get("spec", {}).get("canary") or []
    statuses = isvc.get("status", {}).get("canaryStatuses") or []
    stable = predictor_service(name, predictor_of(isvc).get("name"))
    if at.stage in ("shift", "drain"):
        if not entries:
            return Served(False, "a spec.canary entry (it was removed by someone else)")
        canary_name = entries[0]["predictor"]["name"]
        want = 100 if at.stage == "shift" else 0
        status = next((s for s in statuses if s.get("name") == canary_name), None)
        if status is None or int(status.get("trafficPercent") or 0) != want:
            return Served(False, f"KServe to report canary {canary_name} at {want}%")
        # A canary that is not ready gets no weight on the route (#5984): nothing to drain, and
        # nothing to promote to yet.
        if at.stage == "shift" and not status.get("ready"):
            return Served(False, f"canary {canary_name} to be ready")
        if route is None:
            return Served(True)
        canary = predictor_service(name, canary_name)
        return _route_serves(route, canary if at.stage == "shift" else stable)
    # retarget, remove: no canary left; the stable predictor ready and alone on the route.
    if entries or statuses:
        return Served(False, "KServe to drop the canary from its status")
    if at.stage == "retarget" and _condition(isvc, PREDICTOR_READY) != "True":
        return Served(False, f"the new stable predictor {stable} to be Ready")
    if route is None:
        return Served(True)
    return _route_serves(route, stable)


def _route_serves(route: dict[str, Any], backend: str) -> Served:
    """Every rule sends all its requests to `backend` (any other backendRef at weight 0), and
    every parent (the gateway) has accepted this generation of the route."""
    name = route.get("metadata", {}).get("name", "")
    for rule in route.get("spec", {}).get("rules") or []:
        refs = rule.get("backendRefs") or []
        # Gateway API: a backendRef's weight defaults to 1; weight 0 gets no requests.
        taking = {r.get("name", "") for r in refs if int(r.get("weight", 1)) > 0}
        if taking != {backend}:
            return Served(False, f"HTTPRoute {name} to send every request to {backend}")
    generation = route.get("metadata", {}).get("generation")
    parents = route.get("status", {}).get("parents") or []
    if not parents:
        return Served(False, f"the gateway to accept HTTPRoute {name}")
    for parent in parents:
        for c in parent.get("conditions") or []:
            if c.get("status") == "False":
                return Served(False, f"HTTPRoute {name}: {c.get('reason')} {c.get('message')}")
            if generation is not None and int(c.get("observedGeneration") or 0) < generation:
                return Served(False, f"the gateway to accept generation {generation} of {name}")
    return Served(True)


def _condition(isvc: dict[str, Any], kind: str) -> str | None:
    for c in isvc.get("status", {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return None
