"""The predictor's Prometheus metrics, all labelled with the model name and version.

Request counters and latency use prometheus-client's own types (updated once per request). The
per-row statistics (predicted probabilities, feature values, categories, missing values) are
accumulated in NumPy arrays and turned into metric families only when /metrics is scraped, so a
100-row request costs a few vector operations instead of hundreds of `observe()` calls.

Names and labels are a contract with the canary analysis and the drift monitor; README.md
(## Serving) documents each one.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from mlops_core.drift import ReferenceProfile
from mlops_core.schema import FeatureSchema
from serving import metric_names as names

OTHER_CATEGORY = "__other__"  # a category the schema does not know (policy "unseen")
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 ... 1.0
# The prediction histogram, named per task so a dashboard or rule reads what it plots: the
# positive-class probability, the predicted class index (bucket le=k counts classes 0..k, so the
# class shares are the differences), or the predicted value (buckets: the training predictions'
# quantile edges from the version's reference profile).
PREDICTION_HISTOGRAMS: dict[str, tuple[str, str]] = {
    "binary": (names.PREDICTION_PROBABILITY, "Predicted probability of the positive class."),
    "multiclass": (
        names.PREDICTION_CLASS,
        "Predicted class index (le=k: classes 0..k; the version's schema names the classes).",
    ),
    "regression": (names.PREDICTION_VALUE, "Predicted value."),
}


def prediction_buckets(
    schema: FeatureSchema, reference: ReferenceProfile | None
) -> tuple[float, ...]:
    if schema.task == "multiclass":
        return tuple(float(k) for k in range(len(schema.label_classes)))
    if schema.task == "regression":
        edges = reference.prediction.edges if reference and reference.prediction else ()
        return tuple(sorted({float(e) for e in edges})) or (0.0,)
    return PROBABILITY_BUCKETS


REQUESTS = Counter(
    names.REQUESTS,
    "Prediction requests by protocol, endpoint and outcome (status class).",
    ["model", "version", "protocol", "endpoint", "outcome"],
)
REQUEST_DURATION = Histogram(
    names.REQUEST_DURATION,
    "Time from request received to response sent, by protocol and endpoint.",
    ["model", "version", "protocol", "endpoint"],
    buckets=LATENCY_BUCKETS,
)
REQUEST_ROWS = Histogram(
    "mlops_request_rows",
    "Rows per successful prediction request.",
    ["model", "version"],
    buckets=ROW_BUCKETS,
)

MODEL_CREATED = Gauge(
    "mlops_model_created_timestamp_seconds",
    "When the served version was registered (Unix time); the ModelStale alert reads it.",
    ["model", "version"],
)


class RequestMetrics:
    """Per-request series bound to one model version (label lookups done once, not per request)."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._rows = REQUEST_ROWS.labels(model, version)

    def record(self, protocol: str, endpoint: str, status: int, seconds: float) -> None:
        outcome = f"{status // 100}xx"
        key = (protocol, endpoint, outcome)
        counter = self._counters.get(key)
        if counter is None:
            counter = REQUESTS.labels(self.model, self.version, protocol, endpoint, outcome)
            self._counters[key] = counter
        counter.inc()
        hist = self._durations.get((protocol, endpoint))
        if hist is None:
            hist = REQUEST_DURATION.labels(self.model, self.version, protocol, endpoint)
            self._durations[(protocol, endpoint)] = hist
        hist.observe(seconds)

    def rows(self, n: int) -> None:
        self._rows.observe(n)


# Feature values past this magnitude are counted apart (`mlops_feature_out_of_range`) and kept out
# of the running sums: one request with 1e308 and -1e308 made the sum of squares +Inf and the sum
# NaN, for the life of the process. Squares of values up to 1e100 stay finite for 1e108 rows.
STATISTICS_MAGNITUDE_LIMIT = 1e100


class PredictionStatistics(Collector):
    """Running sums of predictions and feature values, exposed at scrape time."""

    def __init__(
        self, model: str, version: str, schema: FeatureSchema, buckets: tuple[float, ...]
    ) -> None:
        self.labels = [model, version]
        self.schema = schema
        self.buckets = buckets
        self.histogram_name, self.histogram_help = PREDICTION_HISTOGRAMS[schema.task]
        self._lock = threading.Lock()
        self.numeric_idx = [i for i, f in enumerate(schema.features) if f.is_numeric]
        self.numeric_names = [schema.features[i].name for i in self.numeric_idx]
        self.categorical_idx = [i for i, f in enumerate(schema.features) if not f.is_numeric]
        self.category_index = {
            i: {c: k for k, c in enumerate(schema.features[i].categories)}
            for i in self.categorical_idx
        }
        self.prob_le = np.array(buckets)
        self.prob_counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above all
        self.prob_sum = 0.0
        self.value_count = np.zeros(len(self.numeric_idx), dtype=np.int64)
        self.value_sum = np.zeros(len(self.numeric_idx))
        self.value_squares = np.zeros(len(self.numeric_idx))
        self.out_of_range = np.zeros(len(self.numeric_idx), dtype=np.int64)
        self.missing = np.zeros(len(schema.features), dtype=np.int64)
        # One slot per known category, then OTHER.
        self.category_counts = {
            i: np.zeros(len(schema.features[i].categories) + 1, dtype=np.int64)
            for i in self.categorical_idx
        }

    def update(self, rows: np.ndarray, probabilities: np.ndarray) -> None:
        numeric = rows[:, self.numeric_idx].astype(np.float64)
        missing = np.isnan(numeric)
        out_of_range = ~missing & ~(np.abs(numeric) <= STATISTICS_MAGNITUDE_LIMIT)  # Inf too
        present = ~missing & ~out_of_range
        clean = np.where(present, numeric, 0.0)
        prob_bins = np.bincount(
            np.searchsorted(self.prob_le, probabilities, side="left"),
            minlength=len(self.prob_le) + 1,
        )
        cat_updates = []
        for i in self.categorical_idx:
            # Counted per distinct value (Counter counts in C), then each value looked up once.
            index = self.category_index[i]
            other = len(index)
            counts = np.zeros(other + 1, dtype=np.int64)
            n_missing = 0
            for value, count in collections.Counter(rows[:, i].tolist()).items():
                if value is None:
                    n_missing = count
                else:
                    counts[index.get(value, other)] += count
            cat_updates.append((i, n_missing, counts))
        with self._lock:
            self.prob_counts += prob_bins
            self.prob_sum += float(probabilities.sum())
            self.value_count += present.sum(axis=0)
            self.value_sum += clean.sum(axis=0)
            self.value_squares += (clean * clean).sum(axis=0)
            self.missing[self.numeric_idx] += missing.sum(axis=0)
            self.out_of_range += out_of_range.sum(axis=0)
            for i, n_missing, counts in cat_updates:
                self.category_counts[i] += counts
                self.missing[i] += n_missing

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            prob_counts = self.prob_counts.copy()
            prob_sum = self.prob_sum
            value_count = self.value_count.copy()
            value_sum = self.value_sum.copy()
            value_squares = self.value_squares.copy()
            out_of_range = self.out_of_range.copy()
            missing = self.missing.copy()
            category_counts = {i: c.copy() for i, c in self.category_counts.items()}
        labels = self.labels
        prob = HistogramMetricFamily(
            self.histogram_name, self.histogram_help, labels=["model", "version"]
        )
        cumulative = np.cumsum(prob_counts)
        buckets = [
            (floatToGoString(le), float(c))
            for le, c in zip(self.buckets, cumulative[:-1], strict=True)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        prob.add_metric(labels, buckets, sum_value=prob_sum)
        yield prob
        values = SummaryMetricFamily(
            names.FEATURE_VALUE,
            "Sum and count of the non-missing values of each numeric feature.",
            labels=["model", "version", "feature"],
        )
        squares = CounterMetricFamily(
            names.FEATURE_VALUE_SQUARES,
            "Sum of squared values of each numeric feature (variance = E[x^2] - E[x]^2).",
            labels=["model", "version", "feature"],
        )
        for k, name in enumerate(self.numeric_names):
            values.add_metric([*labels, name], int(value_count[k]), float(value_sum[k]))
            squares.add_metric([*labels, name], float(value_squares[k]))
        yield values
        yield squares
        beyond = CounterMetricFamily(
            names.FEATURE_OUT_OF_RANGE,
            f"Values of each numeric feature beyond +-{STATISTICS_MAGNITUDE_LIMIT:g} (or infinite), "
            "left out of mlops_feature_value and mlops_feature_value_squares.",
            labels=["model", "version", "feature"],
        )
        for k, name in enumerate(self.numeric_names):
            beyond.add_metric([*labels, name], float(out_of_range[k]))
        yield beyond
        missing_family = CounterMetricFamily(
            names.FEATURE_MISSING,
            "Rows in which a feature was null or NaN.",
            labels=["model", "version", "feature"],
        )
        for i, f in enumerate(self.schema.features):
            missing_family.add_metric([*labels, f.name], float(missing[i]))
        yield missing_family
        cats = CounterMetricFamily(
            names.FEATURE_CATEGORY,
            f"Rows per category of each categorical feature ({OTHER_CATEGORY}: unknown category).",
            labels=["model", "version", "feature", "category"],
        )
        for i, counts in category_counts.items():
            f = self.schema.features[i]
            for k, c in enumerate((*f.categories, OTHER_CATEGORY)):
                cats.add_metric([*labels, f.name, c], float(counts[k]))
        yield cats

    def describe(self) -> Iterable[Metric]:
        return []


_registered: dict[tuple[str, str], PredictionStatistics] = {}


def prediction_statistics(
    model: str,
    version: str,
    schema: FeatureSchema,
    registry: CollectorRegistry = REGISTRY,
    *,
    reference: ReferenceProfile | None = None,
) -> PredictionStatistics:
    """The statistics collector of one model version, registered once per process."""
    key = (model, version)
    if key not in _registered:
        stats = PredictionStatistics(model, version, schema, prediction_buckets(schema, reference))
        registry.register(stats)
        _registered[key] = stats
    return _registered[key]
