"""What KServe 0.21's Standard-mode reconcile does to an InferenceService's status, its predictor
Services and its HTTPRoute, reduced to the facts tests/components/test_isvc_release.py pins in
the KServe source: canaryStatuses from spec.canary (ready: the Deployment has an available
replica), Services for the stable and each canary predictor and none else (orphans deleted
first), then the route's weighted backendRefs over the ready canaries, accepted by the gateway.
For tests that have no KServe controller; the kind tests run the real one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from components.isvc_traffic import predictor_service, route_name


@dataclass
class KServeStandIn:
    services: set[str] = field(default_factory=set)
    route: dict[str, Any] | None = None
    ready: bool = True  # whether new Deployments come up
    gateway_accepts: bool = True  # whether the gateway accepts the routes KServe writes

    def reconcile(self, isvc: dict[str, Any]) -> dict[str, Any]:
        """One reconcile: the status written back (returned), Services and route updated."""
        name = isvc["metadata"]["name"]
        spec = isvc["spec"]
        stable = predictor_service(name, spec["predictor"].get("name"))
        entries = spec.get("canary") or []
        canaries = {
            e["predictor"]["name"]: predictor_service(name, e["predictor"]["name"]) for e in entries
        }
        existed = set(self.services)
        # reconcileCanaryDeployments: every expected Deployment/Service made, orphans deleted.
        self.services = {stable, *canaries.values()}
        statuses = []
        for e in entries:
            pinned = e["predictor"].get("minReplicas")
            replicas = pinned if pinned is not None else -(-1 * int(e["trafficPercent"]) // 100)
            up = replicas > 0 and (self.ready or canaries[e["predictor"]["name"]] in existed)
            statuses.append(
                {"name": e["predictor"]["name"], "ready": up, "trafficPercent": e["trafficPercent"]}
            )
        out = copy.deepcopy(isvc)
        status = out.setdefault("status", {})
        status["canaryStatuses"] = statuses or None
        if not statuses:
            status.pop("canaryStatuses")
        stable_up = self.ready or stable in existed
        status["conditions"] = [{"type": "PredictorReady", "status": str(stable_up)}]
        if stable_up:  # createRawPredictorHTTPRoute: no route change until PredictorReady
            self.route = self._route(name, stable, entries, statuses, canaries)
        return out

    def _route(self, name, stable, entries, statuses, canaries) -> dict[str, Any]:  # type: ignore[no-untyped-def]
        generation = (self.route or {}).get("metadata", {}).get("generation", 0) + 1
        ready = {s["name"] for s in statuses if s["ready"]}
        refs: list[dict[str, Any]] = [{"name": stable, "port": 80}]
        if entries:  # applyCanaryWeights: only ready canaries, the stable takes the rest
            refs[0]["weight"] = 100 - sum(
                int(e["trafficPercent"]) for e in entries if e["predictor"]["name"] in ready
            )
            refs += [
                {
                    "name": canaries[e["predictor"]["name"]],
                    "port": 80,
                    "weight": e["trafficPercent"],
                }
                for e in entries
                if e["predictor"]["name"] in ready
            ]
        accepted = {
            "type": "Accepted",
            "status": str(self.gateway_accepts),
            "reason": "Accepted" if self.gateway_accepts else "NoMatchingParent",
            "observedGeneration": generation,
        }
        return {
            "metadata": {"name": route_name(name), "generation": generation},
            "spec": {"rules": [{"backendRefs": refs}]},
            "status": {"parents": [{"conditions": [accepted]}]},
        }


def taking_traffic(route: dict[str, Any] | None) -> set[str]:
    """The Services a route sends requests to (weight above 0; Gateway API's default is 1)."""
    if route is None:
        return set()
    return {
        r["name"]
        for rule in route["spec"]["rules"]
        for r in rule["backendRefs"]
        if int(r.get("weight", 1)) > 0
    }
