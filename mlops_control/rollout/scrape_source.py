"""Metrics straight from the model servers' /metrics (local: no Prometheus needed)."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mlops_control.rollout.analysis import NoData, SourceFailed
from mlops_control.rollout.source import (
    ANALYSED_ENDPOINTS,
    DURATION_BUCKET,
    PREDICTION_BUCKETS,
    PROBABILITY_BUCKET,
    REQUESTS,
    Reading,
)
from mlops_control.rollout.window import Histogram, Snapshot, VersionCounters
from mlops_core.errors import MlopsError


class ScrapeError(MlopsError):
    """A /metrics page lacks a series the analysis needs."""


def counters_from_exposition(
    text: str, model: str, version: str, endpoints: tuple[str, ...] = ANALYSED_ENDPOINTS
) -> VersionCounters | None:
    """One version's counters from a Prometheus text exposition; None if it has no requests series."""
    requests = errors = 0.0
    seen_requests = False
    latency: dict[float, float] = defaultdict(float)
    probability: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") != model or s.labels.get("version") != version:
                continue
            if s.name == REQUESTS and s.labels.get("endpoint") in endpoints:
                seen_requests = True
                requests += s.value
                if s.labels.get("outcome") == "5xx":
                    errors += s.value
            elif s.name == DURATION_BUCKET and s.labels.get("endpoint") in endpoints:
                latency[float(s.labels["le"])] += s.value
            elif s.name in PREDICTION_BUCKETS:
                probability[float(s.labels["le"])] = s.value
    if not seen_requests:
        return None
    if not latency or not probability:
        raise ScrapeError(
            f"model {model!r} version {version!r} has {REQUESTS} but no "
            f"{DURATION_BUCKET if not latency else PROBABILITY_BUCKET}"
        )
    return VersionCounters(
        requests=round(requests),
        errors=round(errors),
        latency=Histogram.from_cumulative(latency),
        predictions=Histogram.from_cumulative(probability),
    )


class ScrapeSource:
    """Reads `<url>/metrics` of the stable and the canary model server."""

    def __init__(self, stable_url: str, canary_url: str, *, timeout_s: float = 5.0) -> None:
        self.urls = {"stable": stable_url.rstrip("/"), "canary": canary_url.rstrip("/")}
        self.timeout_s = timeout_s

    def read(self, model: str, stable_version: str, canary_version: str) -> Reading:
        found: dict[str, VersionCounters] = {}
        for role, version in (("stable", stable_version), ("canary", canary_version)):
            url = f"{self.urls[role]}/metrics"
            try:
                r = httpx.get(url, timeout=self.timeout_s)
                r.raise_for_status()
                counters = counters_from_exposition(r.text, model, version)
            except httpx.HTTPError as e:
                return SourceFailed(f"scraping {role} {url}: {e}")
            except (ScrapeError, ValueError) as e:
                return SourceFailed(f"scraping {role} {url}: malformed metrics: {e}")
            if counters is None:
                return NoData(f"{url} has no {REQUESTS} for model={model} version={version} yet")
            found[role] = counters
        return Snapshot(stable=found["stable"], canary=found["canary"])
