"""Monitoring inside the model server: the drift monitor, the label store and the prediction log.

`build_monitoring(bundle, settings)` makes the three observers for the version being served and
registers their Prometheus collectors; `mlops serve` passes `.observers` to the predictor.
`monitoring_routers(predictor)` (listed in `serving.routes`) serves, next to KServe's routes:

- ``POST /v1/models/<name>/feedback``: ground-truth labels, ``{"request_id", "label", "row"?}`` or
  ``{"labels": [...]}``; 404 names an unknown request id, 400 a bad label; the server keeps serving.
  A batch answers ``accepted``, ``rejected_count`` and the first few refused labels.
- ``GET /v1/models/<name>/quality``: live accuracy / log loss / calibration per version.
- ``GET /v1/models/<name>/drift?history=N``: the latest drift judgement per version and history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, CollectorRegistry

from mlops_core.drift import DriftThresholds
from mlops_core.settings import Settings
from serving.http_errors import status_for
from serving.model_bundle import ModelBundle
from serving.monitoring.drift_monitor import DriftMonitor, WindowConfig
from serving.monitoring.feedback import BadFeedback, FeedbackError, FeedbackStore, TooMuchFeedback
from serving.monitoring.monitoring_log import MONITORING_LOG, MonitoringLog
from serving.monitoring.prediction_log import PredictionLog
from serving.prediction_observer import PredictionObserver

MAX_LABELS_PER_REQUEST = 10_000
# A feedback answer lists this many refused labels (with the count of all): 10,000 unknown ids
# made a 1.78 MB answer that echoed the whole request.
MAX_REJECTED_SHOWN = 10
MAX_REQUEST_ID_CHARS = 128  # the server's own ids are 32 hex characters; a client's, at most this


@dataclass
class Monitoring:
    drift: DriftMonitor
    feedback: FeedbackStore
    predictions: PredictionLog | None

    @property
    def observers(self) -> list[PredictionObserver]:
        found: list[PredictionObserver] = [self.drift, self.feedback]
        return [*found, self.predictions] if self.predictions else found

    def close(self) -> None:
        self.drift.stop()
        if self.predictions is not None:
            self.predictions.flush()


def thresholds_from(settings: Settings) -> DriftThresholds:
    return DriftThresholds(
        psi=settings.drift_psi,
        alpha=settings.drift_alpha,
        ks_statistic=settings.drift_ks_statistic,
        cramers_v=settings.drift_cramers_v,
    )


def window_from(settings: Settings) -> WindowConfig:
    return WindowConfig(
        pane_rows=settings.monitor_pane_rows,
        panes=settings.monitor_panes,
        min_rows=settings.monitor_min_rows,
    )


def build_monitoring(
    bundle: ModelBundle,
    settings: Settings,
    *,
    registry: CollectorRegistry | None = REGISTRY,
    start: bool = True,
) -> Monitoring:
    """The observers for one served version, with their metrics on `registry`."""
    version = bundle.version

    def reference_for(v: str) -> Any:
        return bundle.reference if v == version else None

    drift = DriftMonitor(
        model=bundle.model_name,
        feature_names=bundle.schema.feature_names,
        references=reference_for,
        thresholds=thresholds_from(settings),
        window=window_from(settings),
    )
    feedback = FeedbackStore(
        model=bundle.model_name,
        threshold=settings.decision_threshold,
        task=bundle.schema.task,
        classes=bundle.schema.label_classes,
        max_pending=settings.feedback_max_pending,
    )
    predictions = (
        PredictionLog(
            Path(settings.audit_dir) / "predictions.jsonl",
            model=bundle.model_name,
            max_bytes=settings.prediction_log_max_bytes,
            backups=settings.prediction_log_backups,
        )
        if settings.audit_dir
        else None
    )
    if settings.audit_dir:  # drift and quality over time, for `mlops dashboard` (no Prometheus)
        drift.subscribe(
            MonitoringLog(
                Path(settings.audit_dir) / MONITORING_LOG,
                drift=drift,
                feedback=feedback,
                max_bytes=settings.prediction_log_max_bytes,
                backups=settings.prediction_log_backups,
            )
        )
    if registry is not None:
        registry.register(drift.collector())
        registry.register(feedback.collector())
    if start:
        drift.start(settings.monitor_interval_s)
    return Monitoring(drift=drift, feedback=feedback, predictions=predictions)


def feedback_items(body: bytes) -> list[Any]:
    """The labels a feedback body carries: one `{"request_id", "label"}` or `{"labels": [...]}`."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadFeedback(f"feedback body is not JSON: {e}") from e
    items = doc.get("labels", [doc]) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise BadFeedback(
            'expected {"request_id": ..., "label": 0|1} or {"labels": [ ... ]} '
            f"(at most {MAX_LABELS_PER_REQUEST})"
        )
    if len(items) > MAX_LABELS_PER_REQUEST:
        raise TooMuchFeedback(
            f"{len(items)} labels in one request; the limit is {MAX_LABELS_PER_REQUEST}"
        )
    return items


def label_of(item: Any) -> tuple[str, Any, int]:
    """(request id, label, row) of one feedback item, or BadFeedback naming what is missing."""
    if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
        raise BadFeedback("each label needs request_id and label")
    try:
        row = int(item.get("row", 0))
    except (TypeError, ValueError) as e:
        raise BadFeedback(f"bad row: {e}") from e
    request_id = str(item["request_id"])
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise BadFeedback(
            f"request_id is {len(request_id):,} characters; ids are at most {MAX_REQUEST_ID_CHARS}"
        )
    return request_id, item["label"], row


def monitoring_routers(predictor: Any) -> list[APIRouter]:
    """Feedback, quality and drift routes for the monitoring observers the predictor carries."""
    observers = getattr(predictor, "observers", [])
    store = next((o for o in observers if isinstance(o, FeedbackStore)), None)
    monitor = next((o for o in observers if isinstance(o, DriftMonitor)), None)
    name = predictor.name
    router = APIRouter()

    if store is not None:

        @router.post(f"/v1/models/{name}/feedback")
        async def feedback(request: Request) -> JSONResponse:
            items = feedback_items(await request.body())
            accepted, errors = 0, list[dict[str, Any]]()
            for i, item in enumerate(items):
                try:
                    store.add_label(*label_of(item))
                    accepted += 1
                except FeedbackError as e:
                    if len(items) == 1:
                        raise  # one label: its own error is the answer
                    errors.append({"index": i, "status": status_for(e), "error": str(e)})
            return JSONResponse(
                {
                    "accepted": accepted,
                    "rejected_count": len(errors),
                    "rejected": errors[:MAX_REJECTED_SHOWN],  # the first few: a bounded answer
                },
                status_code=200 if accepted or not errors else errors[0]["status"],
            )

        @router.get(f"/v1/models/{name}/quality")
        async def quality() -> JSONResponse:
            versions = {}
            for v in store.versions():
                q = store.quality(v)
                versions[v] = q.to_dict() if q else None
            return JSONResponse({"model": name, "pending": store.pending(), "versions": versions})

    if monitor is not None:

        @router.get(f"/v1/models/{name}/drift")
        async def drift(history: int = 0) -> JSONResponse:
            monitor.evaluate()  # fold what arrived since the last tick, so the answer is current
            return JSONResponse(
                {
                    "model": name,
                    "thresholds": monitor.thresholds.__dict__,
                    "window_rows": monitor.window_rows(),
                    "latest": {v: s.to_dict() for v, s in monitor.latest().items()},
                    "history": [s.to_dict() for s in monitor.history(history)] if history else [],
                }
            )

    return [router]
