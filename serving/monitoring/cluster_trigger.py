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

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from components import isvc_traffic as traffic
from mlops_core.errors import MlopsError
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality
from serving.monitoring.retraining_trigger import (
    RetrainingTrigger,
    RunLauncher,
    TriggerDecision,
    TriggerPolicy,
)

logger = logging.getLogger(__name__)

RETRAINING_ANNOTATION = traffic.ANNOTATION_PREFIX + "retraining-policy"
LAST_RETRAINING = traffic.ANNOTATION_PREFIX + "last-retraining"


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
            return r.json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise DriftReadError(f"Prometheus at {self.url} answered no drift ({e})") from e

    def read(self, model: str, version: str) -> DriftSnapshot | None:
        """None while the version has not been evaluated yet (its window is not full)."""
        sel = f'model="{model}",version="{version}"' + (
            f",{self.selector}" if self.selector else ""
        )
        at = self._scalar("mlops_drift_last_evaluation_timestamp_seconds", sel)
        if at is None:
            return None
        detected = self._by_feature("mlops_drift_detected", sel)
        return DriftSnapshot(
            at=at,
            model=model,
            version=version,
            rows=int(self._scalar("mlops_drift_window_rows", sel) or 0),
            share_drifted=self._scalar("mlops_drift_share_drifted", sel) or 0.0,
            psi=self._by_feature("mlops_drift_psi", sel),
            effect=self._by_feature("mlops_drift_effect", sel),
            drifted={f: v >= 1.0 for f, v in detected.items()},
        )

    def quality(self, model: str, version: str) -> LiveQuality | None:
        """Live quality on labelled traffic (the servers' mlops_live_* gauges), if any."""
        sel = f'model="{model}",version="{version}"' + (
            f",{self.selector}" if self.selector else ""
        )
        rows = self._scalar("mlops_live_labelled_rows", sel)
        if not rows:
            return None

        def gauge(name: str) -> float:
            value = self._scalar(f"mlops_live_{name}", sel)
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
    record_event: Callable[[dict[str, Any], str, str], None]  # isvc, action, message
    annotate: Callable[[dict[str, Any], dict[str, str | None]], None]
    triggers: dict[tuple[str, str], RetrainingTrigger] = field(default_factory=dict)
    last_seen: dict[tuple[str, str], float] = field(default_factory=dict)

    def trigger_for(self, isvc: dict[str, Any], model: str) -> RetrainingTrigger:
        meta = isvc["metadata"]
        key = (meta["namespace"], meta["name"])
        if key not in self.triggers:
            raw = traffic.annotations(isvc)[RETRAINING_ANNOTATION].strip()
            try:
                doc = yaml.safe_load(raw) if raw else {}
                policy = TriggerPolicy(**(doc or {}))
            except (yaml.YAMLError, TypeError, ValueError) as e:
                raise MlopsError(f"{RETRAINING_ANNOTATION} is not a retraining policy: {e}") from e
            trigger = RetrainingTrigger(policy, self.launcher, model=model)
            last = traffic.annotations(isvc).get(LAST_RETRAINING)
            if last:  # the cool-down survives a restart of the controller
                trigger._last_fired = float(json.loads(last)["at"])
            self.triggers[key] = trigger
        return self.triggers[key]

    def reconcile(self, isvc: dict[str, Any], model: str) -> str:
        if RETRAINING_ANNOTATION not in traffic.annotations(isvc):
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
        self.annotate(
            isvc,
            {
                LAST_RETRAINING: json.dumps(
                    {"at": decision.at, "run_id": run, "id": decision.trigger_id}
                )
            },
        )
        if decision.action == "fired":
            message = f"KFP run {run} started: {decision.reason}; {figures}"
            self.record_event(isvc, "retrain", message)
        else:
            self.record_event(isvc, "retrain_failed", f"{decision.reason}; {figures}")


def _figures(snap: DriftSnapshot) -> str:
    drifted = sorted(f for f, d in snap.drifted.items() if d)
    psi = ", ".join(f"{f} PSI {snap.psi.get(f, float('nan')):.3f}" for f in drifted[:6])
    return f"share drifted {snap.share_drifted:.2f} over {snap.rows} rows" + (
        f" ({psi})" if psi else ""
    )
