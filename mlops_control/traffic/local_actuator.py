"""The local actuator: drives the local router's admin API (see `router`)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from mlops_control.rollout.analysis import CanaryDecision
from mlops_control.traffic.actuator import ActuatorError, TrafficStatus

logger = logging.getLogger(__name__)


class LocalActuator:
    def __init__(self, router_url: str, *, timeout_s: float = 180.0) -> None:
        self.router_url = router_url.rstrip("/")
        self.timeout_s = timeout_s  # starting a canary waits for its model server

    def _call(
        self,
        method: str,
        path: str,
        doc: dict[str, Any] | None = None,
        timeout: httpx.Timeout | float | None = None,
    ) -> TrafficStatus:
        url = f"{self.router_url}{path}"
        try:
            r = httpx.request(method, url, json=doc, timeout=timeout or self.timeout_s)
        except httpx.HTTPError as e:
            raise ActuatorError(
                f"the local router at {self.router_url} is not reachable ({e}); start it with "
                "`mlops canary router --model NAME --version N`"
            ) from e
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:300]}
        if r.status_code != 200:
            raise ActuatorError(f"router refused {method} {path}: {body.get('error', body)}")
        return self._status(body)

    @staticmethod
    def _status(state: dict[str, Any]) -> TrafficStatus:
        stable, canary = state.get("stable") or {}, state.get("canary") or {}
        return TrafficStatus(
            model=state.get("model", ""),
            stable_version=stable.get("version"),
            canary_version=canary.get("version"),
            canary_percent=int(state.get("canary_percent", 0)),
            # The router applies a weight the moment it answers: observed == asked.
            observed_canary_percent=int(state.get("canary_percent", 0)),
            detail={
                "stable_url": stable.get("url"),
                "canary_url": canary.get("url"),
                "counts": state.get("counts", {}),
            },
        )

    def status(self) -> TrafficStatus:
        return self._call("GET", "/router/state")

    def start(self, version: str, percent: int) -> TrafficStatus:
        # The router answers once the canary's server is ready or it gave up on it, judging the
        # start by the CPU it gets (StartupProgress); a wall-clock read timeout here would fail a
        # start that is only slow because the machine is loaded.
        return self._call(
            "PUT",
            "/router/canary",
            {"version": str(version), "percent": percent},
            timeout=httpx.Timeout(self.timeout_s, read=None),
        )

    def set_canary_percent(self, percent: int) -> TrafficStatus:
        return self._call("PUT", "/router/weights", {"canary_percent": percent})

    def promote(self) -> TrafficStatus:
        return self._call("POST", "/router/promote")

    def rollback(self) -> TrafficStatus:
        return self._call("POST", "/router/rollback")

    def record(self, decision: CanaryDecision, status: TrafficStatus) -> None:
        # Locally the decision log (JSON lines, written by the rollout loop) is the record.
        logger.info("canary %s: %s", decision.action, decision.reason)

    def record_event(self, action: str, message: str, summary: dict[str, Any]) -> None:
        logger.info("canary %s: %s", action, message)
