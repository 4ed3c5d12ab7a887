"""The live drift monitor: traffic (inputs and predictions) against the model's training reference.

On the request path `observe` only appends the batch to a buffer under a lock (a few microseconds).
Off the path, `fold` turns buffered rows into bucket counts over the reference profile's bins
(`FeatureProfile.bucket_counts`, a `searchsorted` per numeric feature) and adds them to the current
pane of a sliding window; `evaluate` sums the window's panes and judges them with
`mlops_core.drift.compare_counts` — the same PSI / KS / chi-square and thresholds as the validate
step. So memory is (panes x buckets) per version, whatever the traffic, and no raw rows are kept.

The window is the last `panes` panes of `pane_rows` rows each (a pane also closes when it is older
than `pane_seconds`, so quiet traffic still moves the window); panes older than `max_age_s` drop
out. A version is judged only once its window holds `min_rows` rows.

Results are exported by a Prometheus collector (`mlops_drift_*`, labelled model/version/feature;
feature="prediction" is the prediction distribution) and kept as a bounded history of snapshots for
the report and the `GET /v1/models/<name>/drift` route. Subscribers (the retraining trigger) get every
evaluation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mlops_core.drift import DriftReport, DriftThresholds, ReferenceProfile, compare_counts
from serving import metric_names as names

log = logging.getLogger(__name__)

PREDICTION = "prediction"  # the feature label of the prediction distribution


@dataclass(frozen=True)
class WindowConfig:
    # Sizes come from Settings (monitor_pane_rows/panes/min_rows: their one declaration).
    pane_rows: int
    panes: int
    min_rows: int
    pane_seconds: float = 60.0
    max_age_s: float | None = 3600.0
    max_buffered_rows: int = 50_000  # past this, observe folds inline rather than grow

    def __post_init__(self) -> None:
        if self.pane_rows < 1 or self.panes < 1:
            raise ValueError("pane_rows and panes must be at least 1")
        if self.min_rows > self.pane_rows * self.panes:
            raise ValueError(
                f"min_rows {self.min_rows} exceeds the window ({self.panes} panes x "
                f"{self.pane_rows} rows): a version would never be judged"
            )


@dataclass
class _Pane:
    started: float
    rows: int
    counts: dict[str, np.ndarray]


class VersionWindow:
    """Sliding-window bucket counts of one model version's traffic."""

    def __init__(
        self, reference: ReferenceProfile, feature_names: Sequence[str], config: WindowConfig
    ) -> None:
        self.reference = reference
        self.config = config
        # Column index of each profiled feature in the model input (schema order).
        self._columns = [
            (i, reference.feature(name))
            for i, name in enumerate(feature_names)
            if any(f.name == name for f in reference.features)
        ]
        self._panes: deque[_Pane] = deque()

    def _new_pane(self, now: float) -> _Pane:
        counts = {fp.name: np.zeros(len(fp.proportions)) for _, fp in self._columns}
        if self.reference.prediction is not None:
            counts[PREDICTION] = np.zeros(len(self.reference.prediction.proportions))
        pane = _Pane(now, 0, counts)
        self._panes.append(pane)
        while len(self._panes) > self.config.panes:
            self._panes.popleft()
        return pane

    def add(self, rows: np.ndarray, probabilities: np.ndarray, now: float) -> None:
        start = 0
        while start < len(rows):
            pane = self._panes[-1] if self._panes else None
            if (
                pane is None
                or pane.rows >= self.config.pane_rows
                or now - pane.started >= self.config.pane_seconds
            ):
                pane = self._new_pane(now)
            stop = min(len(rows), start + self.config.pane_rows - pane.rows)
            chunk = rows[start:stop]
            for i, fp in self._columns:
                pane.counts[fp.name] += fp.bucket_counts(chunk[:, i])
            if self.reference.prediction is not None:
                pane.counts[PREDICTION] += self.reference.prediction.bucket_counts(
                    probabilities[start:stop]
                )
            pane.rows += stop - start
            start = stop

    def expire(self, now: float) -> None:
        if self.config.max_age_s is None:
            return
        while self._panes and now - self._panes[0].started > self.config.max_age_s:
            self._panes.popleft()

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self._panes)

    def window_counts(self) -> dict[str, np.ndarray]:
        total: dict[str, np.ndarray] = {}
        for pane in self._panes:
            for name, c in pane.counts.items():
                total[name] = total[name] + c if name in total else c.copy()
        return total

    def report(self, thresholds: DriftThresholds) -> DriftReport:
        counts = self.window_counts()
        prediction = counts.pop(PREDICTION, None)
        return compare_counts(
            self.reference, counts, rows=self.rows, thresholds=thresholds, prediction=prediction
        )


@dataclass(frozen=True)
class DriftSnapshot:
    """One evaluation of one version, as kept in the history and served as JSON."""

    at: float
    model: str
    version: str
    rows: int
    share_drifted: float
    psi: dict[str, float]
    effect: dict[str, float]
    drifted: dict[str, bool]
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, report: DriftReport, *, at: float, model: str, version: str) -> DriftSnapshot:
        return cls(
            at=at,
            model=model,
            version=version,
            rows=report.rows,
            share_drifted=report.share_drifted,
            psi={f.feature: f.psi for f in report.features},
            effect={f.feature: f.effect for f in report.features},
            drifted={f.feature: f.drifted for f in report.features},
            reasons={f.feature: f.reason for f in report.features if f.reason},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "model": self.model,
            "version": self.version,
            "rows": self.rows,
            "share_drifted": self.share_drifted,
            "psi": self.psi,
            "effect": self.effect,
            "drifted": self.drifted,
            "reasons": self.reasons,
        }


Subscriber = Callable[[str, DriftReport, float], None]  # (version, report, at)


class DriftMonitor:
    """A `PredictionObserver` that keeps windowed sketches and judges them off the request path."""

    def __init__(
        self,
        *,
        model: str,
        feature_names: Sequence[str],
        references: Callable[[str], ReferenceProfile | None],
        thresholds: DriftThresholds | None = None,
        window: WindowConfig,
        history: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.feature_names = list(feature_names)
        self.thresholds = thresholds or DriftThresholds()
        self.window = window
        self._references = references
        self._clock = clock
        self._lock = threading.Lock()  # guards the buffer only; the hot path takes nothing else
        self._buffer: list[tuple[str, np.ndarray, np.ndarray, float]] = []
        self._buffered_rows = 0
        self._state_lock = threading.Lock()  # guards windows, latest, history
        self._windows: dict[str, VersionWindow | None] = {}
        self._latest: dict[str, DriftSnapshot] = {}
        self._history: deque[DriftSnapshot] = deque(maxlen=history)
        self._subscribers: list[Subscriber] = []
        self._errors = 0
        self._observed_rows = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

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
        with self._lock:
            self._buffer.append((str(model_version), rows, probs, self._clock()))
            self._buffered_rows += len(rows)
            full = self._buffered_rows >= self.window.max_buffered_rows
        if full:  # only under a burst the background fold cannot keep up with
            self.fold()

    # --- off the request path ------------------------------------------------------------------
    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def _window_for(self, version: str) -> VersionWindow | None:
        if version not in self._windows:
            try:
                reference = self._references(version)
            except Exception:  # a missing reference must not break serving; it is counted
                log.exception("no drift reference for %s v%s", self.model, version)
                self._errors += 1
                reference = None
            self._windows[version] = (
                VersionWindow(reference, self.feature_names, self.window) if reference else None
            )
        return self._windows[version]

    def fold(self) -> int:
        """Move buffered traffic into the windows' bucket counts; returns the rows folded."""
        with self._lock:
            batch, self._buffer, self._buffered_rows = self._buffer, [], 0
        if not batch:
            return 0
        with self._state_lock:
            by_version: dict[str, list[tuple[np.ndarray, np.ndarray, float]]] = {}
            for version, rows, probs, at in batch:
                by_version.setdefault(version, []).append((rows, probs, at))
            for version, items in by_version.items():
                win = self._window_for(version)
                if win is None:
                    continue
                # Consecutive batches are concatenated so bucketing is one vector pass per feature;
                # a batch stamped later than the current pane's age limit starts a new pane.
                for rows, probs, at in _runs_by_pane(items, self.window.pane_seconds):
                    win.add(rows, probs, at)
            n = sum(len(r) for _, r, _, _ in batch)
            self._observed_rows += n
            return n

    def evaluate(self) -> dict[str, DriftReport]:
        """Fold, then judge every version whose window is full enough; notify subscribers."""
        self.fold()
        now = self._clock()
        reports: dict[str, DriftReport] = {}
        with self._state_lock:
            for version, win in self._windows.items():
                if win is None:
                    continue
                win.expire(now)
                if win.rows < self.window.min_rows:
                    continue
                report = win.report(self.thresholds)
                snap = DriftSnapshot.of(report, at=now, model=self.model, version=version)
                self._latest[version] = snap
                self._history.append(snap)
                reports[version] = report
        for version, report in reports.items():
            for sub in self._subscribers:
                try:
                    sub(version, report, now)
                except Exception:
                    log.exception("drift subscriber failed for %s v%s", self.model, version)
                    self._errors += 1
        return reports

    def latest(self) -> dict[str, DriftSnapshot]:
        with self._state_lock:
            return dict(self._latest)

    def history(self, limit: int | None = None) -> list[DriftSnapshot]:
        with self._state_lock:
            items = list(self._history)
        return items[-limit:] if limit else items

    def window_counts(self, version: str) -> dict[str, np.ndarray]:
        """The bucket counts of a version's window, per feature (and the prediction)."""
        with self._state_lock:
            win = self._windows.get(str(version))
            return win.window_counts() if win is not None else {}

    def window_rows(self) -> dict[str, int]:
        with self._state_lock:
            return {v: w.rows for v, w in self._windows.items() if w is not None}

    # --- background evaluation -----------------------------------------------------------------
    def start(self, interval_s: float = 5.0) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.evaluate()
                except Exception:
                    log.exception("drift evaluation failed")
                    self._errors += 1

        self._thread = threading.Thread(target=loop, name="drift-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.evaluate()  # judge what arrived since the last tick

    # --- Prometheus ----------------------------------------------------------------------------
    def collector(self) -> Collector:
        return _DriftCollector(self)


def _runs_by_pane(
    items: Iterable[tuple[np.ndarray, np.ndarray, float]], pane_seconds: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Concatenate consecutive batches that arrived within one pane's duration of each other."""
    runs: list[tuple[list[np.ndarray], list[np.ndarray], float]] = []
    for rows, probs, at in items:
        if runs and at - runs[-1][2] < pane_seconds:
            runs[-1][0].append(rows)
            runs[-1][1].append(probs)
        else:
            runs.append(([rows], [probs], at))
    return [
        (np.concatenate(r) if len(r) > 1 else r[0], np.concatenate(p) if len(p) > 1 else p[0], at)
        for r, p, at in runs
    ]


class _DriftCollector(Collector):
    def __init__(self, monitor: DriftMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterable[Any]:
        m = self.monitor
        labels = ["model", "version", "feature"]
        psi = GaugeMetricFamily(
            names.DRIFT_PSI, "PSI of the window vs the reference", labels=labels
        )
        effect = GaugeMetricFamily(
            names.DRIFT_EFFECT,
            "drift effect size: KS statistic (numeric) or Cramer's V (categorical)",
            labels=labels,
        )
        detected = GaugeMetricFamily(
            names.DRIFT_DETECTED, "1 when the feature is judged drifted", labels=labels
        )
        share = GaugeMetricFamily(
            names.DRIFT_SHARE_DRIFTED,
            "share of monitored features (and the prediction) judged drifted",
            labels=["model", "version"],
        )
        rows = GaugeMetricFamily(
            names.DRIFT_WINDOW_ROWS, "rows in the sliding window", labels=["model", "version"]
        )
        last = GaugeMetricFamily(
            names.DRIFT_LAST_EVALUATION,
            "unix time of the last drift evaluation",
            labels=["model", "version"],
        )
        for version, snap in m.latest().items():
            for feature in snap.psi:
                lv = [m.model, version, feature]
                psi.add_metric(lv, snap.psi[feature])
                effect.add_metric(lv, snap.effect[feature])
                detected.add_metric(lv, float(snap.drifted[feature]))
            share.add_metric([m.model, version], snap.share_drifted)
            last.add_metric([m.model, version], snap.at)
        for version, n in m.window_rows().items():
            rows.add_metric([m.model, version], n)
        observed = CounterMetricFamily(
            "mlops_drift_observed_rows", "rows folded into the drift windows", labels=["model"]
        )
        observed.add_metric([m.model], m._observed_rows)
        errors = CounterMetricFamily(
            "mlops_drift_monitor_errors",
            "drift monitor failures (references, subscribers)",
            labels=["model"],
        )
        errors.add_metric([m.model], m._errors)
        yield from (psi, effect, detected, share, rows, last, observed, errors)
