"""The metrics-source interface: read both versions' cumulative counters at one moment, and
`new_source`, the one place that chooses an implementation (Prometheus on the cluster, the model
servers' /metrics locally).

A source answers with a `Snapshot` (both versions' counters), `NoData` (it answered, but a
version has no series yet: not scraped, no traffic, a wrong label) or `SourceFailed` (it could not
be read). The engine holds on no data and rolls back only after repeated failures.

The agreed series (every model server, labelled model and version):
  mlops_requests_total{protocol, endpoint, outcome="2xx"|"4xx"|"5xx"}
  mlops_request_duration_seconds_bucket{protocol, endpoint, le}
  mlops_prediction_probability_bucket{le} (or the task's: _class_bucket, _value_bucket)
5xx responses are the version's errors; a 4xx is the client's fault.
"""

from __future__ import annotations

from typing import Protocol

from serving.canary.analysis import NoData, SourceFailed
from serving.canary.window import Snapshot
from serving.metrics import PREDICTION_HISTOGRAMS

REQUESTS = "mlops_requests_total"
DURATION_BUCKET = "mlops_request_duration_seconds_bucket"
PROBABILITY_BUCKET = "mlops_prediction_probability_bucket"
# The prediction histogram of every task (binary's is PROBABILITY_BUCKET): the divergence check
# compares whichever one the model's versions export.
PREDICTION_BUCKETS: tuple[str, ...] = tuple(
    f"{name}_bucket" for name, _ in PREDICTION_HISTOGRAMS.values()
)
# Endpoints whose traffic the analysis compares (explain is a different, slower workload).
ANALYSED_ENDPOINTS: tuple[str, ...] = ("predict", "infer")

Reading = Snapshot | NoData | SourceFailed


class MetricsSource(Protocol):
    def read(self, model: str, stable_version: str, canary_version: str) -> Reading:
        """Both versions' cumulative counters now."""
        ...
