"""The cluster actuator: moves traffic by patching the InferenceService.

Every write goes through the one traffic-state writer (components/isvc_traffic.py), which picks
KServe Serverless (`canaryTrafficPercent`) or Standard (`spec.canary`) from the object's own
deployment-mode annotation and re-reads and retries on 409. Promotion and rollback are staged
(components/isvc_release.py): each stage is written once the gateway serves the one before, so
no request meets a backend that is going away. This class confirms the split from
the status and records each decision as a core/v1 Event on the InferenceService plus the
`mlops.platform/last-decision` annotation. The API client is injected, so the same code runs from
a laptop (kubeconfig), in a pod, and against the test API server.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from components import isvc_release as release
from components import isvc_traffic as traffic
from components.inference_service import API_VERSION
from mlops_control.records import DecisionRecord
from mlops_control.rollout.analysis import CanaryDecision
from mlops_control.traffic.actuator import ActuatorError, TrafficStatus
from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_CONFIRM_TIMEOUT_S

logger = logging.getLogger(__name__)

EVENT_REASONS = {
    "start": "CanaryStarted",
    "step_up": "CanaryStepUp",
    "hold": "CanaryHold",
    "promote": "CanaryPromoted",
    "rollback": "CanaryRolledBack",
    "promoting": "CanaryPromoting",  # a staged promotion waiting for the gateway
    "rolling_back": "CanaryRollingBack",
    "no_data": "AnalysisNoData",
    "failed": "AnalysisFailed",
    "retrain": "RetrainingTriggered",
    "retrain_failed": "RetrainingLaunchFailed",
}
WARNING_ACTIONS = ("rollback", "rolling_back", "no_data", "failed", "retrain_failed")


class KubernetesActuator:
    def __init__(
        self,
        *,
        api_client: client.ApiClient,
        name: str,
        namespace: str,
        storage_uri_for: Callable[[str], str],
        confirm_timeout_s: float = DEFAULT_CONFIRM_TIMEOUT_S,
        poll_s: float = 2.0,
        max_conflict_retries: int = 5,
        mode: str = "auto",
        reporting_component: str = "mlops.platform/canary",
    ) -> None:
        try:
            self.writer = traffic.InferenceServiceWriter(
                api_client, name, namespace, mode=mode, max_conflict_retries=max_conflict_retries
            )
        except MlopsError as e:
            raise ActuatorError(str(e)) from e
        self.core = client.CoreV1Api(api_client)
        self.name, self.namespace = name, namespace
        self.storage_uri_for = storage_uri_for
        self.confirm_timeout_s = confirm_timeout_s
        self.poll_s = poll_s
        self.reporting_component = reporting_component

    def _where(self) -> str:
        return self.writer.where

    def _write(self, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return fn()
        except MlopsError as e:
            raise ActuatorError(f"{self._where()}: {e}") from e

    def get(self) -> dict[str, Any]:
        return self._write(self.writer.read)

    # --- TrafficActuator ------------------------------------------------------------------------
    def _status(self, isvc: dict[str, Any]) -> TrafficStatus:
        mode = self.writer.mode(isvc)
        pct = mode.canary_percent(isvc)
        observed, split = mode.observed(isvc)
        canary = mode.canary_version(isvc)
        return TrafficStatus(
            model=self.name,
            stable_version=mode.stable_version(isvc),
            canary_version=canary,
            canary_percent=(pct or 0) if canary else 0,
            observed_canary_percent=(observed if canary else (0 if split else None)),
            detail={
                "storage_uri": traffic.storage_uri_in(traffic.predictor_of(isvc)),
                "mode": mode.name,
                "canary_percent_in_spec": pct,
                "traffic": split,
                "resourceVersion": isvc["metadata"].get("resourceVersion"),
                # An image-only rollout's stable and canary pods (one version label on both).
                "pods": traffic.role_pods(isvc) if canary else None,
            },
        )

    def status(self) -> TrafficStatus:
        return self._status(self.get())

    def _confirm(self, isvc: dict[str, Any], want: int | None) -> TrafficStatus:
        """Wait until the status reports the canary's share as `want` (None: promoted)."""
        target = 100 if want is None else want
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            confirmed = self.writer.mode(isvc).confirmed(isvc, want)
            if confirmed or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_s)
            isvc = self.get()
        status = self._status(isvc)
        if not confirmed and self.confirm_timeout_s > 0:
            logger.warning(
                "%s: traffic not confirmed in %.0f s (want %d%% on the canary, status says %s)",
                self._where(),
                self.confirm_timeout_s,
                target,
                status.observed_canary_percent,
            )
        return status

    def start(self, version: str, percent: int) -> TrafficStatus:
        uri = self.storage_uri_for(str(version))
        isvc = self._write(lambda: self.writer.start_canary(str(version), percent, storage_uri=uri))
        return self._confirm(isvc, percent)

    def set_canary_percent(self, percent: int) -> TrafficStatus:
        return self._confirm(self._write(lambda: self.writer.set_canary_percent(percent)), percent)

    def promote(self) -> TrafficStatus:
        return self._release("promote")

    def rollback(self) -> TrafficStatus:
        return self._release("rollback")

    def _release(self, action: release.Action) -> TrafficStatus:
        """Each stage written, then waited on until served (confirm_timeout_s); a stage not
        served in time stops here, before the write that would drop requests (running the same
        command again continues). With confirm_timeout_s 0 the stages are written back to back."""
        isvc = self.get()
        mode = self.writer.mode(isvc)
        stage: release.ReleaseStage | None = release.first_stage(mode, action)
        while stage is not None:
            isvc = self._write_stage(stage)
            isvc = self._await(isvc, stage)
            stage = release.next_stage(mode, stage)
        # Knative mode's one write is served at once; its status confirms the revision's share.
        return self._confirm(isvc, None if action == "promote" else 0)

    def _route(self) -> dict[str, Any] | None:
        try:
            return self.writer.route()
        except MlopsError as e:
            raise ActuatorError(f"{self._where()}: {e}") from e

    def _write_stage(self, at: release.ReleaseStage) -> dict[str, Any]:
        return self._write(
            lambda: self.writer.apply(lambda cur, m: release.stage_patch(cur, m, at))
        )

    def _await(self, isvc: dict[str, Any], at: release.ReleaseStage) -> dict[str, Any]:
        if self.confirm_timeout_s <= 0:
            return isvc
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            mode = self.writer.mode(isvc)
            route = self._route() if mode.name == "standard" else None
            served = release.served(isvc, route, mode, at)
            if served.done:
                return isvc
            if time.monotonic() >= deadline:
                raise ActuatorError(
                    f"{self._where()}: {at.action} stopped at stage {at.stage!r}: still waiting "
                    f"for {served.waiting_for} after {self.confirm_timeout_s:.0f} s; run the "
                    "same command again to continue"
                )
            time.sleep(self.poll_s)
            isvc = self.get()

    def record(self, decision: CanaryDecision, status: TrafficStatus) -> None:
        self.record_event(decision.action, decision.reason, decision_summary(decision))

    def record_event(self, action: str, message: str, summary: dict[str, Any]) -> None:
        isvc = self._write(lambda: self.writer.record_decision(summary))
        emit_event(self.core, isvc, action, message, self.reporting_component)


def emit_event(
    core: client.CoreV1Api,
    isvc: dict[str, Any],
    action: str,
    message: str,
    reporting_component: str,
) -> None:
    """A core/v1 Event on the InferenceService: its reason named from `action` (EVENT_REASONS),
    a Warning for what needs a person's eye."""
    meta = isvc["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    now = datetime.now(UTC)
    host = socket.gethostname()
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{name}.canary-", namespace=namespace),
        involved_object=client.V1ObjectReference(
            api_version=API_VERSION,
            kind="InferenceService",
            name=name,
            namespace=namespace,
            uid=meta.get("uid"),
            resource_version=meta.get("resourceVersion"),
        ),
        reason=EVENT_REASONS.get(action, "CanaryAnalysis"),
        message=message[:1024],
        type="Warning" if action in WARNING_ACTIONS else "Normal",
        action=action,
        source=client.V1EventSource(component="mlops-canary", host=host),
        reporting_component=reporting_component,
        reporting_instance=host,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        core.create_namespaced_event(namespace, event)
    except ApiException as e:
        raise ActuatorError(
            f"cannot record an event on InferenceService {namespace}/{name}: "
            f"{e.status} {e.reason}: {e.body}"
        ) from e


def decision_summary(decision: CanaryDecision) -> dict[str, Any]:
    """The compact form kept in the last-decision annotation."""
    return DecisionRecord.of_decision(decision).to_dict()
