"""The retraining trigger in the cluster: the model servers' drift and quality gauges read from
Prometheus, judged by the same debounced, cooled-down `RetrainingTrigger` as locally, a KFP run
of the training pipeline started with `kfp.Client`. Run by the canary controller's loop.

Opt in per InferenceService with `mlops.platform/retraining-policy` (the `TriggerPolicy` fields as
JSON/YAML, `{}` for the defaults). Each new drift evaluation of the stable version (its
`mlops_drift_last_evaluation_timestamp_seconds` advanced) is one signal. A fired trigger is an
Event (RetrainingTriggered, or a Warning RetrainingLaunchFailed) with the drift figures, a log
line, and `mlops.platform/last-retraining` on the object, which keeps the cool-down across
controller restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from components import isvc_metadata as names
from components import isvc_traffic as traffic
from mlops_control.records import RetrainingRecord
from mlops_control.retraining.trigger import (
    RetrainingTrigger,
    RunLauncher,
    TriggerDecision,
    TriggerPolicy,
    TriggerPolicyError,
)
from mlops_control.traffic.isvc_changes import Change, InferenceServiceChanges
from mlops_core.errors import MlopsError
from serving import metric_names
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality

logger = logging.getLogger(__name__)

RETRAINING_ANNOTATION = names.RETRAINING_POLICY
LAST_RETRAINING = names.LAST_RETRAINING


class DriftReadError(MlopsError):
    """Prometheus could not be read for the drift gauges."""


@dataclass
class PrometheusDriftReader:
    """The latest drift evaluation of one version, from the servers' `mlops_drift_*` gauges."""

    url: str
    selector: str = ""
    timeout_s: float = 10.0

    def _by_feature(self, metric: str, sel: str) -> dict[str, float]:
        rows = self._query(f"max by (feature) ({metric}{{{sel}}})")
        return {r["metric"].get("feature", ""): float(r["value"][1]) for r in rows}

    def _scalar(self, metric: str, sel: str) -> float | None:
        rows = self._query(f"max({metric}{{{sel}}})")
        return float(rows[0]["value"][1]) if rows else None

    def _query(self, promql: str) -> list[dict[str, Any]]:
        try:
            r = httpx.get(
                f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout_s
            )
            r.raise_for_status()
            rows: list[dict[str, Any]] = r.json()["data"]["result"]  # JSON
            return rows
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise DriftReadError(f"Prometheus at {self.url} answered no drift ({e})") from e

    def read(self, model: str, version: str) -> DriftSnapshot | None:
        """None while the version has not been evaluated yet (its window is not full)."""
        sel = f'model="{model}",version="{version}"' + (
            f",{self.selector}" if self.selector else ""
        )
        at = self._scalar(metric_names.DRIFT_LAST_EVALUATION, sel)
        if at is None:
            return None
        detected = self._by_feature(metric_names.DRIFT_DETECTED, sel)
        return DriftSnapshot(
            at=at,
            model=model,
            version=version,
            rows=int(self._scalar(metric_names.DRIFT_WINDOW_ROWS, sel) or 0),
            share_drifted=self._scalar(metric_names.DRIFT_SHARE_DRIFTED, sel) or 0.0,
            psi=self._by_feature(metric_names.DRIFT_PSI, sel),
            effect=self._by_feature(metric_names.DRIFT_EFFECT, sel),
            drifted={f: v >= 1.0 for f, v in detected.items()},
        )

    def quality(self, model: str, version: str) -> LiveQuality | None:
        """Live quality on labelled traffic (the servers' mlops_live_* gauges), if any."""
        sel = f'model="{model}",version="{version}"' + (
            f",{self.selector}" if self.selector else ""
        )
        rows = self._scalar(metric_names.LIVE_LABELLED_ROWS, sel)
        if not rows:
            return None

        def gauge(name: str) -> float:
            value = self._scalar(metric_names.LIVE_PREFIX + name, sel)
            return float("nan") if value is None else value

        return LiveQuality(
            model=model,
            version=version,
            labelled=int(rows),
            accuracy=gauge("accuracy"),
            log_loss=gauge("log_loss"),
            brier_score=gauge("brier_score"),
            calibration_error=gauge("calibration_error"),
            positive_rate=gauge("label_positive_rate"),
            mean_probability=float("nan"),
        )


@dataclass
class RetrainingWatch:
    """One trigger per opted-in InferenceService, fed each new evaluation of its stable version."""

    reader: PrometheusDriftReader
    launcher: RunLauncher
    # Its own record (LAST_RETRAINING) and Events; never the rollout's annotations.
    changes: InferenceServiceChanges
    # Each trigger with what it was made from: the object's uid and its policy annotation.
    triggers: dict[tuple[str, str], tuple[tuple[str, str], RetrainingTrigger]] = field(
        default_factory=dict
    )
    last_seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def trigger_for(self, isvc: dict[str, Any], model: str) -> RetrainingTrigger:
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["name"])
        raw = traffic.annotations_of(isvc)[RETRAINING_ANNOTATION].strip()
        # An edited policy, or the object deleted and made again under its name, gets a new
        # trigger: the old one's thresholds, streak and cool-down were for something else.
        origin = (str(meta.get("uid", "")), raw)
        made = self.triggers.get(key)
        if made is None or made[0] != origin:
            try:
                doc = yaml.safe_load(raw) if raw else {}
                policy = TriggerPolicy(**(doc or {}))
            except (yaml.YAMLError, TypeError, TriggerPolicyError) as e:
                raise MlopsError(f"{RETRAINING_ANNOTATION} is not a retraining policy: {e}") from e
            trigger = RetrainingTrigger(policy, self.launcher, model=model)
            last = RetrainingRecord.of(isvc)
            if last is not None:  # the cool-down survives a restart of the controller
                trigger.restore_last_fired(last.at)
            made = self.triggers[key] = (origin, trigger)
        return made[1]

    def reconcile(self, isvc: dict[str, Any], model: str) -> str:
        if RETRAINING_ANNOTATION not in traffic.annotations_of(isvc):
            key = (isvc["metadata"]["namespace"], isvc["metadata"]["name"])
            self.triggers.pop(key, None)  # opting in again starts afresh
            return "not opted in"
        stable = traffic.mode_of(isvc).stable_version(isvc)
        if stable is None:
            return "no stable version"
        trigger = self.trigger_for(isvc, model)
        snap = self.reader.read(model, stable)
        key = (isvc["metadata"]["namespace"], isvc["metadata"]["name"])
        if snap is None or snap.at <= self.last_seen.get(key, float("-inf")):
            return "no new evaluation"
        self.last_seen[key] = snap.at
        decision = trigger.evaluate(snap, quality=self.reader.quality(model, stable))
        figures = _figures(snap)
        logger.info("retraining %s/%s v%s: %s %s | %s", *key, stable, decision.action,
                    decision.reason, figures)  # fmt: skip
        if decision.action in ("fired", "launch_failed"):
            self._record(isvc, decision, figures)
        return decision.action

    def _record(self, isvc: dict[str, Any], decision: TriggerDecision, figures: str) -> None:
        run = decision.run.run_id if decision.run else ""
        record = RetrainingRecord(at=decision.at, run_id=run, trigger_id=decision.trigger_id)
        # Unguarded: the run has started whatever the rollout or KServe wrote since the read (in
        # the same pass, the rollout's own record); a guarded write lost the record and the Event.
        written = self.changes.apply(
            isvc, Change(annotations={LAST_RETRAINING: record.to_json()}, guarded=False)
        )
        if decision.action == "fired":
            message = f"KFP run {run} started: {decision.reason}; {figures}"
            self.changes.event(written, "retrain", message)
        else:
            self.changes.event(written, "retrain_failed", f"{decision.reason}; {figures}")


def _figures(snap: DriftSnapshot) -> str:
    drifted = sorted(f for f, d in snap.drifted.items() if d)
    psi = ", ".join(f"{f} PSI {snap.psi.get(f, float('nan')):.3f}" for f in drifted[:6])
    return f"share drifted {snap.share_drifted:.2f} over {snap.rows} rows" + (
        f" ({psi})" if psi else ""
    )
