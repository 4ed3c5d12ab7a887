"""The cluster actuator: moves traffic by patching the InferenceService.

KServe serverless mode (the default; Knative does the split) or, with `mode="standard"`, standard
mode's `spec.canary` list. This only writes the spec (patches in `isvc_patches`), confirms the
split from the status (`components.predictor.traffic` / `canaryStatuses`), and records each
decision as a core/v1 Event on the InferenceService plus the `mlops.platform/last-decision`
annotation. Conflicting writes (409) are re-read and retried. The API client is injected, so the
same code runs from a laptop (kubeconfig), in a pod, and against the test API server.
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

from components.inference_service import API_VERSION, GROUP, PLURAL, VERSION
from serving.canary import isvc_patches as patches
from serving.canary.actuator import ActuatorError, TrafficStatus
from serving.canary.analysis import CanaryDecision

logger = logging.getLogger(__name__)

EVENT_REASONS = {
    "start": "CanaryStarted",
    "step_up": "CanaryStepUp",
    "hold": "CanaryHold",
    "promote": "CanaryPromoted",
    "rollback": "CanaryRolledBack",
}


class KubernetesActuator:
    def __init__(
        self,
        *,
        api_client: client.ApiClient,
        name: str,
        namespace: str,
        storage_uri_for: Callable[[str], str],
        confirm_timeout_s: float = 120.0,
        poll_s: float = 2.0,
        max_conflict_retries: int = 5,
        mode: str = "serverless",
    ) -> None:
        if mode not in patches.STRATEGIES:
            raise ActuatorError(
                f"unknown canary mode {mode!r}; choose one of {sorted(patches.STRATEGIES)}"
            )
        self.strategy = patches.STRATEGIES[mode]
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.name, self.namespace = name, namespace
        self.storage_uri_for = storage_uri_for
        self.confirm_timeout_s = confirm_timeout_s
        self.poll_s = poll_s
        self.max_conflict_retries = max_conflict_retries

    # --- API access ----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"InferenceService {self.namespace}/{self.name}"

    def get(self) -> dict[str, Any]:
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as e:
            if e.status == 404:
                raise ActuatorError(
                    f"{self._where()} does not exist; deploy the model first "
                    "(`make deploy` or the pipeline's deploy step)"
                ) from e
            raise ActuatorError(f"cannot read {self._where()}: {e.status} {e.reason}") from e

    def _patch(self, build: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Read, build the patch from what was read, apply; on 409 read again and rebuild."""
        for attempt in range(self.max_conflict_retries + 1):
            current = self.get()
            try:
                body = build(current)
            except patches.PatchError as e:
                raise ActuatorError(f"{self._where()}: {e}") from e
            try:
                return self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, body
                )
            except ApiException as e:
                if e.status == 409 and attempt < self.max_conflict_retries:
                    logger.info("%s changed while patching (409); retrying", self._where())
                    continue
                hint = (
                    " (the canary controller's ServiceAccount needs patch on "
                    "inferenceservices and create on events)"
                    if e.status == 403
                    else ""
                )
                raise ActuatorError(
                    f"cannot patch {self._where()}: {e.status} {e.reason}{hint}: {e.body}"
                ) from e
        raise AssertionError("unreachable")

    # --- TrafficActuator ------------------------------------------------------------------------
    def _status(self, isvc: dict[str, Any]) -> TrafficStatus:
        ann = patches.annotations(isvc)
        pct = self.strategy.canary_percent(isvc)
        observed, traffic = self.strategy.observed(isvc)
        canary = self.strategy.canary_version(isvc)
        return TrafficStatus(
            model=self.name,
            stable_version=ann.get(patches.STABLE_VERSION),
            canary_version=canary,
            canary_percent=(pct or 0) if canary else 0,
            observed_canary_percent=(observed if canary else (0 if traffic else None)),
            detail={
                "storage_uri": patches.storage_uri_in(patches.predictor_of(isvc)),
                "mode": self.strategy.name,
                "canary_percent_in_spec": pct,
                "traffic": traffic,
                "resourceVersion": isvc["metadata"].get("resourceVersion"),
            },
        )

    def status(self) -> TrafficStatus:
        return self._status(self.get())

    def _confirm(self, isvc: dict[str, Any], want: int | None) -> TrafficStatus:
        """Wait until the status reports the canary's share as `want` (None: promoted)."""
        target = 100 if want is None else want
        deadline = time.monotonic() + self.confirm_timeout_s
        while True:
            confirmed = self.strategy.confirmed(isvc, want)
            if confirmed or time.monotonic() >= deadline:
                break
            time.sleep(self.poll_s)
            isvc = self.get()
        status = self._status(isvc)
        observed = status.observed_canary_percent
        if not confirmed and self.confirm_timeout_s > 0:
            logger.warning(
                "%s: traffic not confirmed in %.0f s (want %d%% on the latest revision, "
                "status says %s)",
                self._where(),
                self.confirm_timeout_s,
                target,
                observed,
            )
        return status

    def start(self, version: str, percent: int) -> TrafficStatus:
        uri = self.storage_uri_for(str(version))
        isvc = self._patch(lambda cur: self.strategy.start_patch(cur, str(version), uri, percent))
        return self._confirm(isvc, percent)

    def set_canary_percent(self, percent: int) -> TrafficStatus:
        isvc = self._patch(lambda cur: self.strategy.percent_patch(cur, percent))
        return self._confirm(isvc, percent)

    def promote(self) -> TrafficStatus:
        return self._confirm(self._patch(self.strategy.promote_patch), None)

    def rollback(self) -> TrafficStatus:
        return self._confirm(self._patch(self.strategy.rollback_patch), 0)

    def record(self, decision: CanaryDecision, status: TrafficStatus) -> None:
        self.record_event(decision.action, decision.reason, decision_summary(decision))

    def record_event(self, action: str, message: str, summary: dict[str, Any]) -> None:
        isvc = self._patch(lambda cur: patches.decision_annotation_patch(cur, summary))
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                generate_name=f"{self.name}.canary-", namespace=self.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind="InferenceService",
                name=self.name,
                namespace=self.namespace,
                uid=isvc["metadata"].get("uid"),
                resource_version=isvc["metadata"].get("resourceVersion"),
            ),
            reason=EVENT_REASONS.get(action, "CanaryAnalysis"),
            message=message[:1024],
            type="Warning" if action == "rollback" else "Normal",
            action=action,
            source=client.V1EventSource(component="mlops-canary", host=socket.gethostname()),
            reporting_component="mlops.platform/canary",
            reporting_instance=socket.gethostname(),
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self.core.create_namespaced_event(self.namespace, event)
        except ApiException as e:
            raise ActuatorError(
                f"cannot record an event on {self._where()}: {e.status} {e.reason}: {e.body}"
            ) from e


def decision_summary(decision: CanaryDecision) -> dict[str, Any]:
    """The compact form kept in the last-decision annotation."""
    checks = {c.name: c.status for c in decision.checks}
    return {
        "action": decision.action,
        "percent": decision.canary_percent,
        "from": decision.previous_percent,
        "checks": checks,
        "reason": decision.reason[:300],
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
