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

from mlops_control.rollout.analysis import NoData, SourceFailed
from mlops_control.rollout.window import Snapshot
from serving import metric_names
from serving.metrics import PREDICTION_HISTOGRAMS

REQUESTS = metric_names.REQUESTS_TOTAL
DURATION_BUCKET = metric_names.REQUEST_DURATION_BUCKET
PROBABILITY_BUCKET = metric_names.PREDICTION_PROBABILITY + "_bucket"
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


def read_safely(
    source: MetricsSource, model: str, stable_version: str, canary_version: str
) -> Reading:
    """`source.read`, with anything but a Reading turned into a failed read.

    A rollout must survive whatever its source does (issue 25: one exporter's NaN crashed the
    loop and stopped the controller): a failed read holds, and the policy's limit of failed
    reads in a row rolls back. So every exception is caught here, by design, and named in the
    failure's detail; the engine never sees one.
    """
    try:
        reading = source.read(model, stable_version, canary_version)
    except Exception as e:  # a failing source is evidence, not a crash (see above)
        return SourceFailed(f"{type(source).__name__} raised {type(e).__name__}: {e}"[:500])
    if not isinstance(reading, Snapshot | NoData | SourceFailed):
        return SourceFailed(f"{type(source).__name__} answered a {type(reading).__name__}")
    if isinstance(reading, Snapshot) and not reading.is_sane():
        return SourceFailed(f"{type(source).__name__} answered counters that are not finite counts")
    return reading
