"""Ground truth that arrives later: the label store and live quality on labelled traffic.

As a `PredictionObserver` the store remembers each prediction (probability, model version, input
row) under its request id, in a bounded table (oldest evicted). When a label arrives for a request
id (`POST /v1/models/<name>/feedback`), the pair moves into a sliding window of labelled predictions per version,
from which live accuracy, log loss, Brier score and expected calibration error are computed — the
signal for concept drift and label shift, which leave the inputs (and so the input drift monitor)
unchanged. The labelled window is also the recent data a retraining run can train on
(`labelled_frame`).

A request that scored several rows under one request id is labelled per row (`row`, default 0);
per-row request ids need no `row`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sklearn.metrics import brier_score_loss, log_loss

from mlops_core.errors import InvalidInputError, MlopsError, NotFoundError, TooLargeError
from mlops_core.settings import DEFAULT_DECISION_THRESHOLD
from mlops_core.target import label_key
from serving import metric_names as names


class FeedbackError(MlopsError):
    """A label cannot be recorded."""


class BadFeedback(FeedbackError, InvalidInputError):
    """The feedback itself is malformed: not JSON, no labels, a label that is not 0/1."""


class TooMuchFeedback(FeedbackError, TooLargeError):
    pass


class UnknownPrediction(FeedbackError, NotFoundError):
    """No scored row waits for a label under that request id."""


@dataclass(frozen=True)
class LiveQuality:
    model: str
    version: str
    labelled: int
    accuracy: float
    log_loss: float
    brier_score: float
    calibration_error: float  # expected calibration error over `bins` equal-width bins
    positive_rate: float  # share of positive labels
    mean_probability: float
    # Regression models: errors of the predicted values (NaN for classifiers, and the
    # probability-based fields above are NaN for regression; multiclass has accuracy only).
    mae: float = float("nan")
    rmse: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: a metric that does not apply to the task is null, not NaN."""
        return {
            k: None if isinstance(v, float) and not np.isfinite(v) else v
            for k, v in asdict(self).items()
        }


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Sum over probability bins of (bin share) x |mean predicted - observed positive rate|."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        mask = idx == b
        total += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def live_quality(
    model: str, version: str, labels: np.ndarray, probabilities: np.ndarray, *, threshold: float
) -> LiveQuality:
    y = np.asarray(labels, int)
    p = np.clip(np.asarray(probabilities, float), 1e-7, 1 - 1e-7)
    return LiveQuality(
        model=model,
        version=version,
        labelled=len(y),
        accuracy=float(np.mean((p >= threshold).astype(int) == y)),
        log_loss=float(log_loss(y, p, labels=[0, 1])),
        brier_score=float(brier_score_loss(y, p, pos_label=1)),
        calibration_error=expected_calibration_error(y, p),
        positive_rate=float(y.mean()),
        mean_probability=float(p.mean()),
    )


def live_quality_for_task(
    model: str, version: str, task: str, labels: np.ndarray, scores: np.ndarray, *, threshold: float
) -> LiveQuality:
    """Binary: `live_quality`; multiclass: accuracy of the predicted class (the score is the
    predicted class index); regression: MAE and RMSE of the predicted value."""
    if task == "binary":
        return live_quality(model, version, labels, scores, threshold=threshold)
    nan = float("nan")
    y, s = np.asarray(labels, float), np.asarray(scores, float)
    if task == "multiclass":
        accuracy, mae, rmse = float(np.mean(s == y)), nan, nan
    else:
        accuracy, mae, rmse = (
            nan,
            float(np.mean(np.abs(s - y))),
            float(np.sqrt(np.mean((s - y) ** 2))),
        )
    return LiveQuality(model, version, len(y), accuracy, nan, nan, nan, nan, nan, mae, rmse)


@dataclass
class _Pending:
    """One request's predictions waiting for labels: whole arrays, not an object per row, so a
    100-row request costs the store one entry."""

    version: str
    probabilities: np.ndarray
    rows: np.ndarray
    waiting: np.ndarray  # bool per row: neither labelled nor evicted yet
    live: int  # waiting.sum()


class FeedbackStore:
    """Remembers predictions by request id and scores them when their labels arrive."""

    def __init__(
        self,
        *,
        model: str,
        max_pending: int = 200_000,
        window: int = 20_000,
        threshold: float = DEFAULT_DECISION_THRESHOLD,
        min_labelled: int = 50,
        task: str = "binary",
        classes: tuple[Any, ...] = (0, 1),
    ) -> None:
        self.model = model
        # The served version's label encoding: labels arrive in the user's own form.
        self.task = task
        self.classes = classes
        self._class_index = {label_key(c): i for i, c in enumerate(classes)}
        self.max_pending = max_pending
        self.window = window
        self.threshold = threshold
        self.min_labelled = min_labelled
        self._lock = threading.Lock()
        # request id -> its rows, oldest first; `_pending_rows` counts the rows still waiting.
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._pending_rows = 0
        # per version: deque of (label, probability, row)
        self._labelled: dict[str, deque[tuple[float, float, np.ndarray]]] = {}
        self._labels_total: dict[str, int] = {}
        self._rejected: dict[str, int] = {}

    # --- the request path ----------------------------------------------------------------------
    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
        features_used: list[dict[str, Any]] | None = None,
    ) -> None:
        probs = np.asarray(probabilities)  # one positive-class probability per row (the contract)
        version = str(model_version)
        if isinstance(request_ids, str):
            blocks = [(request_ids, rows, probs)]
        else:  # one id per row, each its own request (row 0)
            blocks = [
                (str(r), rows[i : i + 1], probs[i : i + 1]) for i, r in enumerate(request_ids)
            ]
        with self._lock:
            for key, block_rows, block_probs in blocks:
                n = len(block_rows)
                old = self._pending.get(key)
                if old is not None:  # the same id again: its new rows replace the old ones
                    self._pending_rows -= old.live
                self._pending[key] = _Pending(
                    version, block_probs, block_rows, np.ones(n, dtype=bool), n
                )
                self._pending_rows += n
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest waiting rows beyond `max_pending` (the lock is held)."""
        while self._pending_rows > self.max_pending:
            key, oldest = next(iter(self._pending.items()))
            drop = np.flatnonzero(oldest.waiting)[: self._pending_rows - self.max_pending]
            oldest.waiting[drop] = False
            oldest.live -= len(drop)
            self._pending_rows -= len(drop)
            if oldest.live == 0:
                del self._pending[key]

    # --- labels --------------------------------------------------------------------------------
    def add_label(self, request_id: str, label: Any, row: int = 0) -> str:
        """Record the ground truth of one scored row; returns the version that scored it."""
        value = self._encode(label, request_id)
        with self._lock:
            key, row = str(request_id), int(row)
            pending = self._pending.get(key)
            if pending is None or not 0 <= row < len(pending.waiting) or not pending.waiting[row]:
                self._rejected["unknown_request"] = self._rejected.get("unknown_request", 0) + 1
                raise UnknownPrediction(
                    f"no prediction is waiting for a label under request id {request_id!r} "
                    f"(row {row}): unknown, already labelled, or evicted after "
                    f"{self.max_pending} newer predictions"
                )
            pending.waiting[row] = False
            pending.live -= 1
            self._pending_rows -= 1
            if pending.live == 0:
                del self._pending[key]
            window = self._labelled.setdefault(pending.version, deque(maxlen=self.window))
            window.append((value, float(pending.probabilities[row]), pending.rows[row]))
            self._labels_total[pending.version] = self._labels_total.get(pending.version, 0) + 1
            return pending.version

    def _encode(self, label: Any, request_id: str) -> float:
        """The label as the model's target: a class index, or the value for regression."""
        if self.task == "regression":
            ok = isinstance(label, int | float) and not isinstance(label, bool)
            if ok and np.isfinite(label):
                return float(label)
            self._reject("bad_label")
            raise BadFeedback(f"label must be a number, got {label!r} for request {request_id!r}")
        legacy = self.classes == (0, 1)  # 0/1 labels: the JSON numbers 0 and 1 only
        index = (
            None if legacy and isinstance(label, str) else self._class_index.get(label_key(label))
        )
        if index is None:
            self._reject("bad_label")
            expected = (
                f"{self.classes[0]} or {self.classes[1]}"
                if len(self.classes) == 2
                else f"one of {list(self.classes)}"
            )
            raise BadFeedback(f"label must be {expected}, got {label!r} for request {request_id!r}")
        return index

    def _reject(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] = self._rejected.get(reason, 0) + 1

    # --- quality -------------------------------------------------------------------------------
    def quality(self, version: str, last: int | None = None) -> LiveQuality | None:
        """Live quality of a version over its last `last` labelled rows (default: the window)."""
        with self._lock:
            items = list(self._labelled.get(str(version), ()))
        if last:
            items = items[-last:]
        if len(items) < self.min_labelled:
            return None
        y = np.array([i[0] for i in items])
        p = np.array([i[1] for i in items])
        return live_quality_for_task(
            self.model, str(version), self.task, y, p, threshold=self.threshold
        )

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._labelled)

    def pending(self) -> int:
        with self._lock:
            return self._pending_rows

    def labelled_frame(
        self, feature_names: Sequence[str], target: str, version: str | None = None
    ) -> pd.DataFrame:
        """The labelled window as a training frame (feature columns in schema order + target)."""
        with self._lock:
            windows = [self._labelled[version]] if version else list(self._labelled.values())
            items = [i for w in windows for i in w]
        if not items:
            return pd.DataFrame(columns=[*feature_names, target])
        frame = pd.DataFrame(np.vstack([i[2] for i in items]), columns=list(feature_names))
        frame[target] = [
            i[0] if self.task == "regression" else self.classes[int(i[0])] for i in items
        ]
        return frame

    def collector(self) -> Collector:
        return _FeedbackCollector(self)


class _FeedbackCollector(Collector):
    def __init__(self, store: FeedbackStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Any]:
        s = self.store
        mv = ["model", "version"]
        gauges = {
            "accuracy": GaugeMetricFamily(
                names.LIVE_ACCURACY, "accuracy on labelled live traffic", labels=mv
            ),
            "log_loss": GaugeMetricFamily(
                names.LIVE_LOG_LOSS, "log loss on labelled live traffic", labels=mv
            ),
            "brier_score": GaugeMetricFamily(
                names.LIVE_BRIER_SCORE, "Brier score on labelled live traffic", labels=mv
            ),
            "calibration_error": GaugeMetricFamily(
                names.LIVE_CALIBRATION_ERROR,
                "expected calibration error (10 bins) on labelled live traffic",
                labels=mv,
            ),
            "positive_rate": GaugeMetricFamily(
                names.LIVE_LABEL_POSITIVE_RATE, "share of positive labels", labels=mv
            ),
            "mae": GaugeMetricFamily(
                "mlops_live_mae", "mean absolute error on labelled live traffic", labels=mv
            ),
            "rmse": GaugeMetricFamily(
                "mlops_live_rmse", "root mean squared error on labelled live traffic", labels=mv
            ),
            "labelled": GaugeMetricFamily(
                names.LIVE_LABELLED_ROWS, "labelled rows in the quality window", labels=mv
            ),
        }
        labels_total = CounterMetricFamily(
            "mlops_feedback_labels", "labels received and matched to a prediction", labels=mv
        )
        rejected = CounterMetricFamily(
            "mlops_feedback_rejected", "labels refused, by reason", labels=["model", "reason"]
        )
        for version in s.versions():
            q = s.quality(version)
            if q is not None:
                for key, gauge in gauges.items():
                    value = float(getattr(q, key))
                    if np.isfinite(value):  # a series per task: no NaN for what does not apply
                        gauge.add_metric([s.model, version], value)
        with s._lock:
            totals = dict(s._labels_total)
            refused = dict(s._rejected)
        for version, n in totals.items():
            labels_total.add_metric([s.model, version], n)
        for reason, n in refused.items():
            rejected.add_metric([s.model, reason], n)
        yield from (*gauges.values(), labels_total, rejected)
