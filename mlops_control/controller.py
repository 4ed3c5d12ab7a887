"""The in-cluster canary controller: the rollout step of `mlops canary run`, driven by the
InferenceServices themselves, with its state kept on them (and, where opted in, the retraining
trigger: mlops_control/retraining/cluster_trigger.py).

Opt in per InferenceService with the annotation `mlops.platform/rollout-policy`: a rollout
policy inline (JSON/YAML, `{}` for the defaults) or `configmap:<name>` (key `policy.yaml` of a
ConfigMap in the same namespace). Whenever such an InferenceService has a canary (a
`spec.canary` entry in Standard mode, or `canaryTrafficPercent` with a new model in Knative
mode; put there with kubectl, by the pipeline's deploy step or by `mlops canary start`), the
controller takes the release strategy one step (mlops_control/strategies/) every
`analysis_interval_s` against Prometheus, and steps up, promotes or rolls back.

It acts only through `InferenceServiceChanges` (mlops_control/traffic/isvc_changes.py): every
traffic change is written in the same patch as the state that led to it, guarded by the
resourceVersion read, so a controller killed between two steps resumes at the same step with the
evidence so far and never steps up twice; a changed object is read and decided again next pass.
State lives in structured records (mlops_control/records.py): `mlops.platform/rollout-state`
(the progress), `mlops.platform/last-decision` (the last decision) and
`mlops.platform/rollout-status` (the step and the last decision's numbers).
`mlops.platform/rollout=abort|promote` stops a rollout by hand or skips the analysis. Every
decision is an Event (CanaryStarted, CanaryStepUp, CanaryHold, CanaryPromoted, CanaryRolledBack,
AnalysisNoData, AnalysisFailed; CanaryPromoting and CanaryRollingBack while a staged release
waits for the gateway). In Knative mode the label `mlops.platform/rollout-step`
(`kubectl get isvc -L mlops.platform/rollout-step`) names the version and its step, or how its
rollout ended.

A promotion or rollback in Standard mode is staged (components/isvc_release.py: the weight
first, then the retarget or removal, each once the route serves the one before) and each stage is
written with its record in the rollout state, so a restart mid-release resumes it.

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

from components import isvc_metadata as names
from components import isvc_release as release
from components import isvc_traffic as traffic
from components.inference_service import GROUP, PLURAL, VERSION
from mlops_control.records import DecisionRecord, RolloutRecord
from mlops_control.retraining.cluster_trigger import RetrainingWatch
from mlops_control.rollout.analysis import CanaryDecision, NoData, Observation, SourceFailed
from mlops_control.rollout.loop import format_decision
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.source import MetricsSource, read_safely
from mlops_control.rollout.step import with_baseline
from mlops_control.rollout.window import Snapshot
from mlops_control.strategies import ReleaseStrategy
from mlops_control.strategies.canary import CanaryStrategy
from mlops_control.traffic.isvc_changes import Change, InferenceServiceChanges, TrafficChange
from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_CONTROLLER_RESYNC_S, DEFAULT_RELEASE_STAGE_TIMEOUT_S

logger = logging.getLogger(__name__)

# The names (one place: components/isvc_metadata.py), as this module's readers know them.
POLICY_ANNOTATION = names.ROLLOUT_POLICY
STATE_ANNOTATION = names.ROLLOUT_STATE
STATUS_ANNOTATION = names.ROLLOUT_STATUS
COMMAND_ANNOTATION = names.ROLLOUT_COMMAND
# A label, so that `kubectl get isvc -L mlops.platform/rollout-step` shows the rollout: KServe's
# printer columns (URL, Ready, Prev, Latest, ...: status fields its controller writes) cannot show
# an annotation or a condition of ours. "v2-25pct" while v2 is at 25%; "v2-promoted",
# "v3-rolled-back" once it ended.
STEP_LABEL = names.ROLLOUT_STEP_LABEL
POLICY_CONFIGMAP_KEY = "policy.yaml"
_TRAFFIC: dict[str, TrafficChange] = {
    "step_up": "set_percent",
    "promote": "promote",
    "rollback": "rollback",
    "hold": "keep",
}


class ControllerError(MlopsError):
    """The controller cannot act on an InferenceService (a bad policy, a missing ConfigMap)."""


def record_of(isvc: dict[str, Any]) -> RolloutRecord | None:
    return RolloutRecord.of(isvc)


# --- one InferenceService ----------------------------------------------------------------------


@dataclass
class Reconciler:
    """Takes one opted-in InferenceService one step further. Pure of the process: everything
    it needs to continue is read from the object each time."""

    api_client: client.ApiClient
    # The InferenceService -> its metrics source (its namespace's; its pods where they tell the
    # stable from the canary: components.isvc_traffic.role_pods).
    source_for: Callable[[dict[str, Any]], MetricsSource]
    clock: Callable[[], float] = time.time
    changes: InferenceServiceChanges | None = None  # default: through the Kubernetes API
    # A release stage not served in this time is reported (once, AnalysisFailed) and waited on.
    stage_timeout_s: float = DEFAULT_RELEASE_STAGE_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.changes is None:
            from mlops_control.traffic.isvc_changes import KubernetesChanges

            self.changes = KubernetesChanges(self.api_client)

    @property
    def _changes(self) -> InferenceServiceChanges:
        assert self.changes is not None  # set in __post_init__
        return self.changes

    def policy_for(self, isvc: dict[str, Any]) -> RolloutPolicy:
        raw = traffic.annotations_of(isvc)[POLICY_ANNOTATION].strip()
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

    def strategy_for(self, isvc: dict[str, Any]) -> ReleaseStrategy:
        return CanaryStrategy(self.policy_for(isvc))

    def reconcile(self, isvc: dict[str, Any]) -> str:
        """Act on the object as read; returns what was done (for logs and tests)."""
        ann = traffic.annotations_of(isvc)
        if POLICY_ANNOTATION not in ann:
            return "not opted in"
        try:
            strategy = self.strategy_for(isvc)
        except MlopsError as e:
            return self._failed(isvc, f"rollout policy: {e}", "bad policy")
        mode = traffic.mode_of(isvc)
        canary = mode.canary_version(isvc)
        record = RolloutRecord.of(isvc)
        if record is not None and record.release is not None:
            return self._advance(isvc, record)
        command = ann.get(COMMAND_ANNOTATION, "").strip().lower()
        if canary is None:
            return self._idle(isvc, record, command)
        if command in ("abort", "promote"):
            return self._by_hand(strategy, isvc, command, canary)
        stable = mode.stable_version(isvc)
        if stable is None:
            return self._failed(
                isvc,
                f"canary v{canary} has no recorded stable version to compare with",
                "no stable",
            )
        if record is None or record.canary_version != canary:
            return self._begin(strategy, isvc, canary, stable)
        if self.clock() - record.last_analysis_at < strategy.analysis_interval_s:
            return "waiting for the interval"
        return self._analyse(strategy, isvc, record)

    def _failed(self, isvc: dict[str, Any], message: str, outcome: str) -> str:
        """Record a failure once (not on every pass): the last decision says it already."""
        last = DecisionRecord.of(isvc)
        if last is None or last.action != "failed" or last.reason != message[:300]:
            record = DecisionRecord.of_event("failed", message)
            self._changes.apply(isvc, Change(annotations={names.LAST_DECISION: record.to_json()}))
            self._changes.event(isvc, "failed", message)
        return outcome

    def _idle(self, isvc: dict[str, Any], record: RolloutRecord | None, command: str) -> str:
        clear: dict[str, str | None] = {}
        if record is not None:
            clear[STATE_ANNOTATION] = None
        if command:
            clear[COMMAND_ANNOTATION] = None
        if clear:
            self._changes.apply(isvc, Change(annotations=clear))
            return "cleared"
        return "no canary"

    def _by_hand(
        self, strategy: ReleaseStrategy, isvc: dict[str, Any], command: str, canary: str
    ) -> str:
        action: release.Action = "promote" if command == "promote" else "rollback"
        verb = "promoted" if action == "promote" else "rolled back"
        message = f"v{canary} {verb} by hand ({COMMAND_ANNOTATION}={command})"
        now = self.clock()
        stable = traffic.mode_of(isvc).stable_version(isvc) or ""
        record = RolloutRecord(canary, stable, strategy.begin(_percent(isvc), now), now)
        self._release(
            isvc,
            action,
            replace(record, manual=True),
            message,
            {
                COMMAND_ANNOTATION: None,
                names.LAST_DECISION: DecisionRecord.of_event(
                    action, message, manual=True
                ).to_json(),
            },
            self._label(isvc, action, canary, None),
        )
        return action

    # --- a staged release (components/isvc_release.py) -------------------------------------

    def _release(
        self,
        isvc: dict[str, Any],
        action: release.Action,
        record: RolloutRecord,
        message: str,
        annotations: dict[str, str | None],
        labels: dict[str, str | None],
    ) -> str:
        """Write the release's first stage with the record of it (and the decision's own
        annotations), then go on as far as what is served allows."""
        stage = release.first_stage(traffic.mode_of(isvc), action)
        record = replace(record, release=stage, release_since=self.clock(), release_message=message)
        change = Change(
            traffic="release",
            stage=stage,
            annotations={**annotations, STATE_ANNOTATION: record.to_json()},
            labels=labels,
        )
        written = self._changes.apply(isvc, change)
        logger.info(
            "%s/%s v%s: %s (staged: %s)", _namespace(isvc), isvc["metadata"]["name"],
            record.canary_version, message, stage.stage,
        )  # fmt: skip
        outcome = self._advance(written, record)
        if outcome.startswith(f"{action} {stage.stage}:"):  # waiting: say so while it lasts
            self._changes.event(
                written,
                "promoting" if action == "promote" else "rolling_back",
                f"{message}; in stages: {' -> '.join(release.STAGES['standard'][action])}",
            )
        return outcome

    def _advance(self, isvc: dict[str, Any], record: RolloutRecord) -> str:
        """The release's written stage: once served, the next stage (or, after the last, the
        record cleared and the Event); until then, wait. Resumes from the record alone."""
        while True:
            stage = record.release
            assert stage is not None  # only called with a release in the record
            mode = traffic.mode_of(isvc)
            route = self._changes.route(isvc) if mode.name == "standard" else None
            served = release.served(isvc, route, mode, stage)
            if not served.done:
                waited = self.clock() - record.release_since
                waiting = f"{stage.action} {stage.stage}: waiting for {served.waiting_for}"
                if waited > self.stage_timeout_s:
                    return self._failed(
                        isvc, f"v{record.canary_version} {waiting} ({waited:.0f} s)", waiting
                    )
                return waiting
            following = release.next_stage(mode, stage)
            if following is None:
                written = self._changes.apply(isvc, Change(annotations={STATE_ANNOTATION: None}))
                self._changes.event(written, stage.action, record.release_message)
                return "promoted" if stage.action == "promote" else "rolled back"
            record = replace(record, release=following, release_since=self.clock())
            isvc = self._changes.apply(
                isvc,
                Change(
                    traffic="release",
                    stage=following,
                    annotations={STATE_ANNOTATION: record.to_json()},
                ),
            )

    def _begin(
        self, strategy: ReleaseStrategy, isvc: dict[str, Any], canary: str, stable: str
    ) -> str:
        now = self.clock()
        progress = strategy.begin(_percent(isvc), now)
        reading = read_safely(self.source_for(isvc), model_of(isvc), stable, canary)
        if isinstance(reading, Snapshot):  # else the first analysis takes the baseline
            progress = with_baseline(progress, reading)
        record = RolloutRecord(canary, stable, progress, now)
        want = strategy.target_percent(progress)
        change = Change(
            traffic="set_percent" if _percent(isvc) != want else "keep",
            percent=want if _percent(isvc) != want else None,
            annotations={
                STATE_ANNOTATION: record.to_json(),
                names.LAST_DECISION: DecisionRecord.of_event(
                    "start", f"canary v{canary} at {want}%"
                ).to_json(),
            },
            labels=self._label(isvc, "start", canary, want),
        )
        written = self._changes.apply(isvc, change)
        self._changes.event(
            written,
            "start",
            f"canary v{canary} (stable v{stable}) at {want}%; {strategy.plan(progress)}",
        )
        return "started"

    def _analyse(
        self, strategy: ReleaseStrategy, isvc: dict[str, Any], record: RolloutRecord
    ) -> str:
        reading = read_safely(
            self.source_for(isvc),
            model_of(isvc),
            record.stable_version,
            record.canary_version,
        )
        now = self.clock()
        result = strategy.step(record.progress, reading, now)
        record = replace(record, progress=result.progress, last_analysis_at=now)
        if result.decision is None:  # the first good reading: the next one makes a window
            self._changes.apply(isvc, Change(annotations={STATE_ANNOTATION: record.to_json()}))
            return "baseline"
        decision = result.decision
        self._act(isvc, decision, record, result.observation)
        return decision.action

    def _act(
        self,
        isvc: dict[str, Any],
        decision: CanaryDecision,
        record: RolloutRecord,
        observation: Observation | None,
    ) -> None:
        """The traffic change, the state, the last decision and the status in one patch,
        guarded by the resourceVersion the analysis read; then the Event."""
        state = record.progress.state
        summary = DecisionRecord.of_decision(decision)
        status = json.dumps(
            {
                "canary": record.canary_version,
                "stable": record.stable_version,
                "step": decision.canary_percent,
                "analyses": state.analyses,
                **summary.to_dict(),
                "numbers": {c.name: c.numbers for c in decision.checks},
            },
            separators=(",", ":"),
            default=float,
        )
        traffic_change = _TRAFFIC[decision.action]
        if traffic_change in ("promote", "rollback"):
            self._release(
                isvc,
                "promote" if traffic_change == "promote" else "rollback",
                record,
                format_decision(decision),
                {STATUS_ANNOTATION: status[:16000], names.LAST_DECISION: summary.to_json()},
                self._label(isvc, decision.action, record.canary_version, decision.canary_percent),
            )
            return
        change = Change(
            traffic=traffic_change,
            percent=decision.canary_percent if traffic_change == "set_percent" else None,
            annotations={
                STATUS_ANNOTATION: status[:16000],
                STATE_ANNOTATION: None if decision.final else record.to_json(),
                names.LAST_DECISION: summary.to_json(),
            },
            labels=self._label(
                isvc, decision.action, record.canary_version, decision.canary_percent
            ),
        )
        written = self._changes.apply(isvc, change)
        kind: str = decision.action
        if isinstance(observation, NoData):
            kind = "no_data"
        elif isinstance(observation, SourceFailed) and decision.action == "hold":
            kind = "failed"
        self._changes.event(written, kind, format_decision(decision))
        logger.info(
            "%s/%s v%s: %s",
            _namespace(isvc),
            isvc["metadata"]["name"],
            record.canary_version,
            format_decision(decision),
        )

    def _label(
        self, isvc: dict[str, Any], action: str, canary: str, percent: int | None
    ) -> dict[str, str | None]:
        """STEP_LABEL's value after `action`, if it changes; in the same patch as the state it
        shows. Knative mode only: in Standard mode KServe copies an InferenceService's labels onto
        its predictors' pod templates, unfiltered, so a changing label would restart every pod."""
        if traffic.mode_of(isvc).name == "standard":
            return {}
        if action == "promote":
            want = f"v{canary}-promoted"
        elif action == "rollback":
            want = f"v{canary}-rolled-back"
        else:
            want = f"v{canary}-{percent if percent is not None else _percent(isvc)}pct"
        want = _label_value(want)
        labels = isvc["metadata"].get("labels") or {}
        return {} if labels.get(STEP_LABEL) == want else {STEP_LABEL: want}


def step_label(isvc: dict[str, Any]) -> str | None:
    """STEP_LABEL's value for a running canary ("v2-25pct"); None without one (the label then
    keeps how the last rollout ended)."""
    canary = traffic.mode_of(isvc).canary_version(isvc)
    if canary is None:
        return None
    return f"v{canary}-{_percent(isvc)}pct"


def _label_value(text: str) -> str:
    """A valid label value: 63 characters at most, [A-Za-z0-9._-], alphanumeric at both ends."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63].strip("-._")


def _percent(isvc: dict[str, Any]) -> int:
    return int(traffic.mode_of(isvc).canary_percent(isvc) or 0)


def _namespace(isvc: dict[str, Any]) -> str:
    return str(isvc["metadata"]["namespace"])


def model_of(isvc: dict[str, Any]) -> str:
    """The model label the servers' metrics carry (the builder's app.kubernetes.io/name)."""
    labels = isvc["metadata"].get("labels") or {}
    return str(labels.get("app.kubernetes.io/name") or isvc["metadata"]["name"])


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

    def release(self) -> bool:
        """Give the Lease up if this replica holds it (on shutdown): another replica then takes it
        at its next pass instead of after `lease_duration_s`. True if it was released."""
        api = client.CoordinationV1Api(self.api_client)
        try:
            lease = api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return False
            lease.spec.holder_identity = ""
            api.replace_namespaced_lease(self.name, self.namespace, lease)  # resourceVersion kept
            return True
        except ApiException as e:  # gone, or renewed or taken meanwhile: nothing of ours to give
            if e.status in (404, 409):
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
    resync_s: float = DEFAULT_CONTROLLER_RESYNC_S
    retraining: RetrainingWatch | None = None

    def list(self) -> list[dict[str, Any]]:
        api = client.CustomObjectsApi(self.reconciler.api_client)
        found = api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        items: list[dict[str, Any]] = found["items"]  # JSON
        return items

    def pass_once(self) -> dict[str, str]:
        """One reconcile of every InferenceService, if this replica leads."""
        if not self.election.try_acquire():
            return {}
        done: dict[str, str] = {}
        retraining = self.retraining
        for isvc in self.list():
            name = isvc["metadata"]["name"]
            done[name] = self._each(name, self.reconciler.reconcile, isvc)
            if retraining is not None:
                self._each(name, lambda obj: retraining.reconcile(obj, model_of(obj)), isvc)
        return done

    def _each(
        self, name: str, reconcile: Callable[[dict[str, Any]], str], isvc: dict[str, Any]
    ) -> str:
        """One object's reconcile: whatever goes wrong with it is logged and reported, and never
        stops the others (nor the loop: a crash-looping controller reconciles nothing)."""
        try:
            return reconcile(isvc)
        except MlopsError as e:
            logger.warning("%s/%s: %s", self.namespace, name, e)
            return f"error: {e}"
        except Exception as e:  # a bug or an unforeseen answer: one object's, not the loop's
            logger.exception("%s/%s: unexpected failure", self.namespace, name)
            return f"error: {type(e).__name__}: {e}"

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
