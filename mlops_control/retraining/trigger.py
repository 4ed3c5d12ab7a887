"""The retraining trigger: sustained drift (or falling live quality) starts the training pipeline.

Policy as data (`TriggerPolicy`). Each evaluation of the champion's drift window is a signal: it is
"drifting" when at least `share_drifted` of the monitored features (the prediction included) are
drifted, when any feature in `features` is, or when live accuracy on labelled traffic is below
`min_accuracy`. The trigger fires only when the signal has held for `sustain_s` seconds over at
least `min_evaluations` consecutive evaluations (debounce: one noisy window never retrains), and
then not again for `cooldown_s` (cool-down: a run has time to finish and roll out before the next).
Every decision that changes something — a streak starting or breaking, a run started or failing —
is appended to the decision log with ids, so `mlops audit` can say which drift started which run.

The run itself goes through a `RunLauncher`: `LocalRunLauncher` runs the same KFP pipeline with
`kfp.local` (`pipelines.local_run.run_training_locally`) on the recent labelled data;
`KfpRunLauncher` submits it to Kubeflow Pipelines with `kfp.Client`, and `schedule_recurring_training`
creates the calendar-driven run there (`kfp.Client.create_recurring_run`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from mlops_core.errors import InvalidInputError, MlopsError
from mlops_core.jsonl_log import DecisionLog
from mlops_core.settings import (
    DEFAULT_TRIGGER_COOLDOWN_S,
    DEFAULT_TRIGGER_MIN_EVALUATIONS,
    DEFAULT_TRIGGER_SHARE_DRIFTED,
    DEFAULT_TRIGGER_SUSTAIN_S,
)
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality

log = logging.getLogger(__name__)


class LaunchError(MlopsError):
    """A retraining run could not be started."""


class TriggerPolicyError(InvalidInputError):
    """A retraining policy's fields are out of range."""


class ScheduleError(InvalidInputError):
    """A schedule for recurring training runs is not one KFP takes."""


@dataclass(frozen=True)
class TriggerPolicy:
    share_drifted: float = DEFAULT_TRIGGER_SHARE_DRIFTED
    features: tuple[str, ...] = ()
    min_accuracy: float | None = None
    sustain_s: float = DEFAULT_TRIGGER_SUSTAIN_S
    min_evaluations: int = DEFAULT_TRIGGER_MIN_EVALUATIONS
    cooldown_s: float = DEFAULT_TRIGGER_COOLDOWN_S

    def __post_init__(self) -> None:
        if not 0 < self.share_drifted <= 1:
            raise TriggerPolicyError(f"share_drifted must be in (0, 1], got {self.share_drifted}")
        if self.sustain_s < 0 or self.cooldown_s < 0 or self.min_evaluations < 1:
            raise TriggerPolicyError(
                "sustain_s and cooldown_s must be >= 0 and min_evaluations >= 1"
            )


@dataclass(frozen=True)
class RetrainingRequest:
    trigger_id: str
    model: str
    version: str  # the champion whose traffic drifted
    at: float
    reason: str
    drifted_features: tuple[str, ...]
    data_source: str = ""  # where the recent data for the run is; empty = the launcher's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    run_name: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class RunLauncher(Protocol):
    def launch(self, request: RetrainingRequest) -> LaunchedRun: ...


Action = Literal["idle", "pending", "cooldown", "fire", "fired", "launch_failed"]


@dataclass(frozen=True)
class TriggerDecision:
    action: Action
    at: float
    version: str
    reason: str = ""
    streak: int = 0
    drifting_for_s: float = 0.0
    trigger_id: str = ""
    run: LaunchedRun | None = None


def drifting_reason(
    policy: TriggerPolicy, snapshot: DriftSnapshot, quality: LiveQuality | None
) -> tuple[str, tuple[str, ...]]:
    """Why this evaluation counts as drifting ("" when it does not), and the drifted features."""
    drifted = tuple(f for f, d in snapshot.drifted.items() if d)
    reasons = []
    if snapshot.share_drifted >= policy.share_drifted and drifted:
        reasons.append(
            f"{len(drifted)}/{len(snapshot.drifted)} monitored features drifted "
            f"(share {snapshot.share_drifted:.2f} >= {policy.share_drifted}): {', '.join(drifted)}"
        )
    watched = [f for f in policy.features if snapshot.drifted.get(f)]
    if watched and not reasons:
        reasons.append(f"watched features drifted: {', '.join(watched)}")
    if (
        policy.min_accuracy is not None
        and quality is not None
        and quality.accuracy < policy.min_accuracy
    ):
        reasons.append(
            f"live accuracy {quality.accuracy:.3f} < {policy.min_accuracy} "
            f"over {quality.labelled} labelled rows"
        )
    return "; ".join(reasons), drifted


class RetrainingTrigger:
    """Debounced, cooled-down decision to retrain; one instance per monitored model."""

    def __init__(
        self,
        policy: TriggerPolicy,
        launcher: RunLauncher,
        *,
        model: str,
        decisions: DecisionLog | None = None,
        data_source: Callable[[str], str] | None = None,
    ) -> None:
        self.policy = policy
        self.launcher = launcher
        self.model = model
        self.decisions = decisions
        self._data_source = data_source  # trigger_id -> URI of the recent data to train on
        self._streak = 0
        self._since: float | None = None
        self._last_fired: float | None = None
        self._lock = threading.Lock()
        self.fired: list[TriggerDecision] = []

    def restore_last_fired(self, at: float) -> None:
        """Carry the cool-down over from a firing recorded elsewhere (a restarted controller)."""
        with self._lock:
            self._last_fired = at

    def _log(self, event: str, **fields: Any) -> None:
        if self.decisions is not None:
            self.decisions.append(event, **({"model": self.model} | fields))

    def decide(
        self, snapshot: DriftSnapshot, *, quality: LiveQuality | None = None
    ) -> TriggerDecision:
        """The policy's state machine alone: "idle", "pending", "cooldown" or "fire".

        A "fire" starts the cool-down; `evaluate` is this plus launching the run.
        """
        with self._lock:
            return self._decide(snapshot, quality)

    def _decide(self, snap: DriftSnapshot, quality: LiveQuality | None) -> TriggerDecision:
        at, version = snap.at, snap.version
        reason, _ = drifting_reason(self.policy, snap, quality)
        if self._last_fired is not None and at - self._last_fired < self.policy.cooldown_s:
            left = self.policy.cooldown_s - (at - self._last_fired)
            return TriggerDecision("cooldown", at, version, f"cool-down: {left:.0f}s left")
        if not reason:
            if self._streak:
                self._log("drift_cleared", version=version, streak=self._streak)
            self._streak, self._since = 0, None
            return TriggerDecision("idle", at, version)
        if self._streak == 0:
            self._since = at
            self._log("drift_sustaining", version=version, reason=reason, rows=snap.rows)
        self._streak += 1
        held = at - (self._since if self._since is not None else at)
        if self._streak < self.policy.min_evaluations or held < self.policy.sustain_s:
            return TriggerDecision("pending", at, version, reason, self._streak, held)
        streak = self._streak
        self._streak, self._since, self._last_fired = 0, None, at
        return TriggerDecision(
            "fire",
            at,
            version,
            f"drift sustained {held:.0f}s over {streak} evaluations: {reason}",
            streak,
            held,
            f"trg-{uuid.uuid4().hex[:12]}",
        )

    def evaluate(
        self, snapshot: DriftSnapshot, *, quality: LiveQuality | None = None
    ) -> TriggerDecision:
        """Judge one drift evaluation of the champion; launches a run when the policy fires."""
        decision = self.decide(snapshot, quality=quality)
        if decision.action != "fire":
            return decision
        request = RetrainingRequest(
            trigger_id=decision.trigger_id,
            model=self.model,
            version=decision.version,
            at=decision.at,
            reason=decision.reason,
            drifted_features=tuple(f for f, d in snapshot.drifted.items() if d),
        )
        try:
            if self._data_source is not None:
                request = replace(request, data_source=self._data_source(request.trigger_id))
            run = self.launcher.launch(request)
        except Exception as e:  # recorded; the cool-down still applies, so no launch storm
            log.exception("retraining launch failed")
            fields = request.to_dict()
            fields["drift_evaluated_at"] = fields.pop("at")
            self._log("retraining_launch_failed", **fields, error=str(e))
            return replace(
                decision, action="launch_failed", reason=f"{decision.reason}; launch failed: {e}"
            )
        fields = request.to_dict()
        fields["drift_evaluated_at"] = fields.pop("at")  # the log's own `at` is the decision time
        self._log(
            "retraining_triggered",
            **fields,
            run_id=run.run_id,
            run_name=run.run_name,
            **{f"run_{k}": v for k, v in run.details.items()},
        )
        fired = replace(decision, action="fired", run=run)
        self.fired.append(fired)
        return fired


# --- launchers --------------------------------------------------------------------------------


class LocalRunLauncher:
    """Runs the training pipeline with kfp.local, in a background thread (the monitor goes on).

    `on_done(request, result_or_error)` is called when the run ends; `wait()` joins the last run.
    """

    def __init__(
        self,
        *,
        registry_uri: str,
        work_dir: str | Path,
        base_params: Any = None,
        on_done: Callable[[RetrainingRequest, dict[str, Any] | Exception], None] | None = None,
        background: bool = True,
    ) -> None:
        from pipelines.local_run import TrainingParams

        self.registry_uri = registry_uri
        self.work_dir = Path(work_dir)
        self.base_params = base_params or TrainingParams()
        self.on_done = on_done
        self.background = background
        self._thread: threading.Thread | None = None
        self.results: dict[str, dict[str, Any] | Exception] = {}

    def launch(self, request: RetrainingRequest) -> LaunchedRun:
        if self._thread is not None and self._thread.is_alive():
            raise LaunchError("a local retraining run is still in progress")
        run_id = f"local-{request.trigger_id}"

        def run() -> None:
            from pipelines.local_run import run_training_locally

            params = self.base_params
            if request.data_source:
                params = replace(params, data_source=request.data_source)
            try:
                outcome: dict[str, Any] | Exception = run_training_locally(
                    params,
                    registry_uri=self.registry_uri,
                    model_name=request.model,
                    work_dir=self.work_dir,
                )
            except Exception as e:
                outcome = e
            self.results[request.trigger_id] = outcome
            if self.on_done is not None:
                self.on_done(request, outcome)

        if self.background:
            self._thread = threading.Thread(target=run, name=run_id, daemon=True)
            self._thread.start()
        else:
            run()
        return LaunchedRun(run_id=run_id, run_name=run_id, details={"runner": "kfp.local"})

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


class KfpRunLauncher:
    """Submits the compiled training pipeline to Kubeflow Pipelines (`kfp.Client`)."""

    def __init__(
        self,
        *,
        host: str,
        package_path: str | Path,
        arguments: dict[str, Any],
        experiment: str = "retraining",
        client: Any = None,
    ) -> None:
        self.package_path = str(package_path)
        self.arguments = dict(arguments)
        self.experiment = experiment
        self.host = host
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import kfp

            self._client = kfp.Client(host=self.host)
        return self._client

    def launch(self, request: RetrainingRequest) -> LaunchedRun:
        arguments = dict(self.arguments) | {"model_name": request.model}
        if request.data_source:
            arguments["data_source"] = request.data_source
        name = f"retrain-{request.model}-{request.trigger_id}"
        try:  # kfp.Client checks the API's health when it is made, so that is inside too
            result = self.client.create_run_from_pipeline_package(
                self.package_path,
                arguments=arguments,
                run_name=name,
                experiment_name=self.experiment,
                enable_caching=False,
            )
        except Exception as e:
            raise LaunchError(f"KFP at {self.host} refused the retraining run: {e}") from e
        return LaunchedRun(run_id=result.run_id, run_name=name, details={"runner": "kfp"})


def check_cron(cron: str) -> None:
    """KFP's cron expressions have 6 fields, seconds first."""
    if len(cron.split()) != 6:
        raise ScheduleError(
            f"KFP cron expressions have 6 fields (seconds first), e.g. '0 0 3 * * *'; got {cron!r}"
        )


def schedule_recurring_training(
    client: Any,
    *,
    package_path: str | Path,
    arguments: dict[str, Any],
    cron: str,
    name: str = "churn-scheduled-training",
    experiment: str = "retraining",
) -> str:
    """Create a KFP recurring run of a compiled pipeline (cron has 6 fields, seconds first)."""
    check_cron(cron)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    job = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=name,
        cron_expression=cron,
        pipeline_package_path=str(package_path),
        params=arguments,
        max_concurrency=1,
        no_catchup=True,
        enable_caching=False,
    )
    return str(job.recurring_run_id)
