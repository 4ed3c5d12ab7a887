"""The in-cluster canary controller: the rollout loop of `mlops canary run`, driven by the
InferenceServices themselves, with its state kept on them (and, where opted in, the retraining
trigger: serving/monitoring/cluster_trigger.py).

Opt in per InferenceService with the annotation `mlops.platform/rollout-policy`: a rollout
policy inline (JSON/YAML, `{}` for the defaults) or `configmap:<name>` (key `policy.yaml` of a
ConfigMap in the same namespace). Whenever such an InferenceService has a canary (a
`spec.canary` entry in Standard mode, or `canaryTrafficPercent` with a new model in Serverless
mode; put there with kubectl, by the pipeline's deploy step or by `mlops canary start`), the
controller runs the analysis every `analysis_interval_s` against Prometheus and steps up,
promotes or rolls back through the one traffic-state writer.

State lives on the object, in `mlops.platform/rollout-state` (the engine's `CanaryState`, the
last counters read and when): every traffic change is written in the same patch as the state
that led to it, guarded by the resourceVersion read, so a controller killed between two steps
resumes at the same step with the evidence so far and never steps up twice; a 409 re-reads and
retries. `mlops.platform/rollout=abort|promote` stops a rollout by hand or skips the analysis.
Every decision is an Event (CanaryStarted, CanaryStepUp, CanaryHold, CanaryPromoted,
CanaryRolledBack, AnalysisNoData, AnalysisFailed) plus `mlops.platform/last-decision`; the step and
the last decision's numbers are in `mlops.platform/rollout-status`, and the label
`mlops.platform/rollout-step` (`kubectl get isvc -L mlops.platform/rollout-step`) names the version
and its step, or how its rollout ended.

With two or more replicas one acts: leader election on a coordination.k8s.io Lease.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from components import isvc_traffic as traffic
from components.inference_service import GROUP, PLURAL, VERSION
from mlops_core.errors import MlopsError
from serving.canary.analysis import (
    CanaryDecision,
    CanaryState,
    NoData,
    SourceFailed,
    analyze,
    base_error_rate,
    evidence_plan,
)
from serving.canary.kubernetes_actuator import KubernetesActuator, decision_summary
from serving.canary.policy import RolloutPolicy
from serving.canary.rollout import format_decision, step_index_for
from serving.canary.source import MetricsSource
from serving.canary.window import Snapshot, VersionCounters
from serving.monitoring.cluster_trigger import RetrainingWatch

logger = logging.getLogger(__name__)

POLICY_ANNOTATION = traffic.ANNOTATION_PREFIX + "rollout-policy"
STATE_ANNOTATION = traffic.ANNOTATION_PREFIX + "rollout-state"
STATUS_ANNOTATION = traffic.ANNOTATION_PREFIX + "rollout-status"
COMMAND_ANNOTATION = traffic.ANNOTATION_PREFIX + "rollout"
# A label, so that `kubectl get isvc -L mlops.platform/rollout-step` shows the rollout: KServe's
# printer columns (URL, Ready, Prev, Latest, ...: status fields its controller writes) cannot show
# an annotation or a condition of ours. "v2-25pct" while v2 is at 25%; "v2-promoted",
# "v3-rolled-back" once it ended.
STEP_LABEL = traffic.ANNOTATION_PREFIX + "rollout-step"
POLICY_CONFIGMAP_KEY = "policy.yaml"


class ControllerError(MlopsError):
    """The controller cannot act on an InferenceService (a bad policy, a missing ConfigMap)."""


# --- the state kept on the InferenceService ----------------------------------------------------


@dataclass(frozen=True)
class RolloutRecord:
    """What the controller keeps in `mlops.platform/rollout-state`."""

    canary_version: str
    stable_version: str
    state: CanaryState
    baseline: Snapshot | None  # the counters the next window starts from
    started_at: float
    last_analysis_at: float

    def to_json(self) -> str:
        doc = {
            "canary_version": self.canary_version,
            "stable_version": self.stable_version,
            "state": self.state.to_dict(),
            "baseline": None
            if self.baseline is None
            else {
                "stable": self.baseline.stable.to_dict(),
                "canary": self.baseline.canary.to_dict(),
            },
            "started_at": self.started_at,
            "last_analysis_at": self.last_analysis_at,
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> RolloutRecord:
        doc = json.loads(raw)
        base = doc.get("baseline")
        return cls(
            canary_version=str(doc["canary_version"]),
            stable_version=str(doc["stable_version"]),
            state=CanaryState.from_dict(doc["state"]),
            baseline=None
            if base is None
            else Snapshot(
                VersionCounters.from_dict(base["stable"]), VersionCounters.from_dict(base["canary"])
            ),
            started_at=float(doc["started_at"]),
            last_analysis_at=float(doc["last_analysis_at"]),
        )


def record_of(isvc: dict[str, Any]) -> RolloutRecord | None:
    raw = traffic.annotations(isvc).get(STATE_ANNOTATION)
    if not raw:
        return None
    try:
        return RolloutRecord.from_json(raw)
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("ignoring an unreadable %s: %s", STATE_ANNOTATION, e)
        return None


# --- one InferenceService ----------------------------------------------------------------------


@dataclass
class Reconciler:
    """Takes one opted-in InferenceService one analysis further. Pure of the process: everything
    it needs to continue is read from the object each time."""

    api_client: client.ApiClient
    source_for: Callable[[str], MetricsSource]  # namespace -> source
    clock: Callable[[], float] = time.time

    def policy_for(self, isvc: dict[str, Any]) -> RolloutPolicy:
        raw = traffic.annotations(isvc)[POLICY_ANNOTATION].strip()
        ns = isvc["metadata"]["namespace"]
        if raw.startswith("configmap:"):
            name = raw.split(":", 1)[1].strip()
            try:
                cm = client.CoreV1Api(self.api_client).read_namespaced_config_map(name, ns)
            except ApiException as e:
                raise ControllerError(
                    f"rollout policy ConfigMap {ns}/{name}: {e.status} {e.reason}"
                ) from e
            raw = (cm.data or {}).get(POLICY_CONFIGMAP_KEY, "")
        try:
            doc = yaml.safe_load(raw) if raw else {}
        except yaml.YAMLError as e:
            raise ControllerError(f"{POLICY_ANNOTATION} is not valid YAML/JSON: {e}") from e
        return RolloutPolicy.from_dict(doc or {})

    def actuator(self, isvc: dict[str, Any]) -> KubernetesActuator:
        meta = isvc["metadata"]
        return KubernetesActuator(
            api_client=self.api_client,
            name=meta["name"],
            namespace=meta["namespace"],
            storage_uri_for=_no_new_versions,
            confirm_timeout_s=0,  # the next reconcile reads the status; never block the loop
            reporting_component="mlops.platform/canary-controller",
        )

    def record_event(self, isvc: dict[str, Any], action: str, message: str) -> None:
        self.actuator(isvc).record_event(action, message, {"action": action})

    def annotate(self, isvc: dict[str, Any], values: dict[str, str | None]) -> None:
        self.actuator(isvc).writer.annotate(values)

    def reconcile(self, isvc: dict[str, Any]) -> str:
        """Act on the object as read; returns what was done (for logs and tests)."""
        outcome = self._reconcile(isvc)
        if POLICY_ANNOTATION in traffic.annotations(isvc):
            self._label_step(isvc, outcome)
        return outcome

    def _label_step(self, isvc: dict[str, Any], outcome: str) -> None:
        """Keep STEP_LABEL in line with the rollout. A patch of its own after the decision's
        (the label only shows what the annotations hold); a lost one is redone next pass.
        Knative mode only: in Standard mode KServe copies an InferenceService's labels onto its
        predictors' pod templates, unfiltered, so a changing label would restart every pod."""
        mode = traffic.mode_of(isvc)
        if mode.name == "standard":
            return
        canary = mode.canary_version(isvc)
        if outcome in ("promote", "rollback") and canary is not None:
            want: str | None = f"v{canary}-" + (
                "promoted" if outcome == "promote" else "rolled-back"
            )
        elif outcome in ("started", "step_up"):
            want = step_label(self.actuator(isvc).writer.read())
        else:
            want = step_label(isvc)
        labels = isvc["metadata"].get("labels") or {}
        want = _label_value(want) if want is not None else None
        if want is None or labels.get(STEP_LABEL) == want:
            return
        self.actuator(isvc).writer.apply(
            lambda cur, _: {"metadata": {"labels": {STEP_LABEL: want}}}
        )

    def _reconcile(self, isvc: dict[str, Any]) -> str:
        ann = traffic.annotations(isvc)
        if POLICY_ANNOTATION not in ann:
            return "not opted in"
        act = self.actuator(isvc)
        try:
            policy = self.policy_for(isvc)
        except MlopsError as e:
            # Once per bad policy, not on every pass: the last decision says it already.
            if '"action":"failed"' not in ann.get(traffic.LAST_DECISION, ""):
                act.record_event("failed", f"rollout policy: {e}", {"action": "failed"})
            return "bad policy"
        mode = traffic.mode_of(isvc)
        canary = mode.canary_version(isvc)
        record = record_of(isvc)
        command = ann.get(COMMAND_ANNOTATION, "").strip().lower()
        rv = isvc["metadata"]["resourceVersion"]
        if canary is None:
            return self._idle(act, record, command, rv)
        if command in ("abort", "promote"):
            return self._by_hand(act, command, canary, rv)
        stable = mode.stable_version(isvc)
        if record is None or record.canary_version != canary:
            return self._begin(act, policy, isvc, canary, stable)
        if self.clock() - record.last_analysis_at < policy.analysis_interval_s:
            return "waiting for the interval"
        return self._analyse(act, policy, isvc, record)

    def _idle(
        self, act: KubernetesActuator, record: RolloutRecord | None, command: str, rv: str
    ) -> str:
        clear: dict[str, str | None] = {}
        if record is not None:
            clear[STATE_ANNOTATION] = None
        if command:
            clear[COMMAND_ANNOTATION] = None
        if clear:
            act.writer.annotate(clear, based_on=rv)
            return "cleared"
        return "no canary"

    def _by_hand(self, act: KubernetesActuator, command: str, canary: str, rv: str) -> str:
        action = "promote" if command == "promote" else "rollback"
        extra: dict[str, str | None] = {COMMAND_ANNOTATION: None, STATE_ANNOTATION: None}
        if action == "promote":
            act.writer.promote(extra_annotations=extra, based_on=rv)
        else:
            act.writer.rollback(extra_annotations=extra, based_on=rv)
        verb = "promoted" if action == "promote" else "rolled back"
        act.record_event(
            action,
            f"v{canary} {verb} by hand ({COMMAND_ANNOTATION}={command})",
            {"action": action, "manual": True},
        )
        return action

    def _begin(
        self,
        act: KubernetesActuator,
        policy: RolloutPolicy,
        isvc: dict[str, Any],
        canary: str,
        stable: str | None,
    ) -> str:
        if stable is None:
            if '"action":"failed"' not in traffic.annotations(isvc).get(traffic.LAST_DECISION, ""):
                act.record_event(
                    "failed",
                    f"canary v{canary} has no recorded stable version to compare with",
                    {"action": "failed"},
                )
            return "no stable"
        ns = isvc["metadata"]["namespace"]
        reading = self.source_for(ns).read(model_of(isvc), stable, canary)
        state = CanaryState(step_index=step_index_for(policy, _percent(isvc)))
        baseline = reading if isinstance(reading, Snapshot) else None
        if baseline is not None and baseline.stable.requests:
            state = replace(
                state, base_error_rate=baseline.stable.errors / baseline.stable.requests
            )
        now = self.clock()
        record = RolloutRecord(canary, stable, state, baseline, now, now)
        want = policy.steps[state.step_index]
        extra: dict[str, str | None] = {STATE_ANNOTATION: record.to_json()}
        rv = isvc["metadata"]["resourceVersion"]
        if _percent(isvc) != want:
            act.writer.set_canary_percent(want, extra_annotations=extra, based_on=rv)
        else:
            act.writer.annotate(extra, based_on=rv)
        plan = evidence_plan(policy, base_error_rate(state))
        act.record_event(
            "start",
            f"canary v{canary} (stable v{stable}) at {want}%; {plan}",
            {"action": "start", "percent": want, "version": canary},
        )
        return "started"

    def _analyse(
        self,
        act: KubernetesActuator,
        policy: RolloutPolicy,
        isvc: dict[str, Any],
        record: RolloutRecord,
    ) -> str:
        ns = isvc["metadata"]["namespace"]
        reading = self.source_for(ns).read(
            model_of(isvc), record.stable_version, record.canary_version
        )
        now = self.clock()
        if isinstance(reading, Snapshot) and record.baseline is None:
            # The first good reading is the baseline; the next one makes the first window.
            record = replace(record, baseline=reading, last_analysis_at=now)
            act.writer.annotate(
                {STATE_ANNOTATION: record.to_json()}, based_on=isvc["metadata"]["resourceVersion"]
            )
            return "baseline"
        if isinstance(reading, Snapshot):
            assert record.baseline is not None
            observation: Any = reading.minus(record.baseline)
            baseline: Snapshot | None = reading
        else:
            observation, baseline = reading, record.baseline
        decision, state = analyze(policy, record.state, observation)
        if not decision.final and now - record.started_at > policy.progress_deadline_s:
            decision = replace(
                decision,
                action="rollback",
                canary_percent=0,
                reason=f"progress deadline of {policy.progress_deadline_s:.0f} s passed before "
                f"the canary could be verified (last: {decision.reason})",
            )
        record = replace(record, state=state, baseline=baseline, last_analysis_at=now)
        self._act(act, decision, record, observation, isvc["metadata"]["resourceVersion"])
        return decision.action

    def _act(
        self,
        act: KubernetesActuator,
        decision: CanaryDecision,
        record: RolloutRecord,
        observation: Any,
        rv: str,
    ) -> None:
        """The traffic change, the state and the status in one patch, guarded by the
        resourceVersion the analysis read (`rv`); then the Event."""
        status = json.dumps(
            {
                "canary": record.canary_version,
                "stable": record.stable_version,
                "step": decision.canary_percent,
                "analyses": record.state.analyses,
                **decision_summary(decision),
                "numbers": {c.name: c.numbers for c in decision.checks},
            },
            separators=(",", ":"),
            default=float,
        )
        extra: dict[str, str | None] = {STATUS_ANNOTATION: status[:16000]}
        if decision.final:
            extra[STATE_ANNOTATION] = None
        else:
            extra[STATE_ANNOTATION] = record.to_json()
        if decision.action == "step_up":
            act.writer.set_canary_percent(
                decision.canary_percent, extra_annotations=extra, based_on=rv
            )
        elif decision.action == "promote":
            act.writer.promote(extra_annotations=extra, based_on=rv)
        elif decision.action == "rollback":
            act.writer.rollback(extra_annotations=extra, based_on=rv)
        else:
            act.writer.annotate(extra, based_on=rv)
        kind = decision.action
        if isinstance(observation, NoData):
            kind = "no_data"
        elif isinstance(observation, SourceFailed) and decision.action == "hold":
            kind = "failed"
        act.record_event(kind, format_decision(decision), decision_summary(decision))
        logger.info(
            "%s/%s v%s: %s",
            act.namespace,
            act.name,
            record.canary_version,
            format_decision(decision),
        )


def _no_new_versions(version: str) -> str:
    raise ControllerError("the controller never starts canaries; it analyses the ones it finds")


def step_label(isvc: dict[str, Any]) -> str | None:
    """STEP_LABEL's value for a running canary ("v2-25pct"); None without one (the label then
    keeps how the last rollout ended)."""
    mode = traffic.mode_of(isvc)
    canary = mode.canary_version(isvc)
    if canary is None:
        return None
    return f"v{canary}-{_percent(isvc)}pct"


def _label_value(text: str) -> str:
    """A valid label value: 63 characters at most, [A-Za-z0-9._-], alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")


def _percent(isvc: dict[str, Any]) -> int:
    return int(traffic.mode_of(isvc).canary_percent(isvc) or 0)


def model_of(isvc: dict[str, Any]) -> str:
    """The model label the servers' metrics carry (the builder's app.kubernetes.io/name)."""
    labels = isvc["metadata"].get("labels") or {}
    return labels.get("app.kubernetes.io/name") or isvc["metadata"]["name"]


# --- leader election ---------------------------------------------------------------------------


@dataclass
class LeaderElection:
    """A coordination.k8s.io/v1 Lease: whoever holds an unexpired lease acts."""

    api_client: client.ApiClient
    namespace: str
    name: str = "mlops-canary-controller"
    identity: str = socket.gethostname()
    lease_duration_s: int = 15

    def try_acquire(self) -> bool:
        api = client.CoordinationV1Api(self.api_client)
        now = datetime.now(UTC)
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, transitions=0),
            )
            try:
                api.create_namespaced_lease(self.namespace, body)
                return True
            except ApiException as ce:
                if ce.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = (
            renewed is None
            or renewed + timedelta(seconds=spec.lease_duration_seconds or self.lease_duration_s)
            < now
        )
        if holder not in (None, "", self.identity) and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        lease.spec = self._spec(
            now,
            transitions=transitions,
            acquired=spec.acquire_time if holder == self.identity else now,
        )
        try:
            api.replace_namespaced_lease(self.name, self.namespace, lease)  # resourceVersion kept
            return True
        except ApiException as e:
            if e.status == 409:  # another replica renewed or took it first
                return False
            raise

    def _spec(
        self, now: datetime, *, transitions: int, acquired: datetime | None = None
    ) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=self.lease_duration_s,
            acquire_time=acquired or now,
            renew_time=now,
            lease_transitions=transitions,
        )


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class Controller:
    reconciler: Reconciler
    election: LeaderElection
    namespace: str
    resync_s: float = 5.0
    retraining: RetrainingWatch | None = None

    def list(self) -> list[dict[str, Any]]:
        api = client.CustomObjectsApi(self.reconciler.api_client)
        return api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]

    def pass_once(self) -> dict[str, str]:
        """One reconcile of every InferenceService, if this replica leads."""
        if not self.election.try_acquire():
            return {}
        done: dict[str, str] = {}
        for isvc in self.list():
            name = isvc["metadata"]["name"]
            try:
                done[name] = self.reconciler.reconcile(isvc)
                if self.retraining is not None:
                    self.retraining.reconcile(isvc, model_of(isvc))
            except MlopsError as e:  # one object's trouble must not stop the others
                logger.warning("%s/%s: %s", self.namespace, name, e)
                done[name] = f"error: {e}"
        return done

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Reconcile on every watch event and at least every `resync_s` (the analysis clock)."""
        api = client.CustomObjectsApi(self.reconciler.api_client)
        while not stop():
            try:
                self.pass_once()
                stream = watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    timeout_seconds=max(1, int(self.resync_s)),
                )
                for _ in stream:  # any change: reconcile now rather than at the next resync
                    if stop():
                        return
                    self.pass_once()
            except (ApiException, OSError) as e:
                logger.warning("controller loop: %s; retrying in %.0f s", e, self.resync_s)
                time.sleep(self.resync_s)
