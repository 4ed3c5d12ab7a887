"""Synthetic metric streams for the analysis engine: two versions under a shared traffic stream.

Used by the engine's tests and by `benchmarks/bench_canary.py`. Each version is a traffic model
(error rate, log-normal latency, predicted probabilities from a logistic score), and a window is
drawn the way a Knative/local router splits traffic: each request goes to the canary with the
step's probability. Histograms use the model servers' own buckets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mlops_control.rollout.window import Histogram, VersionCounters, Window
from serving.metrics import LATENCY_BUCKETS, PROBABILITY_BUCKETS

# The model servers' own buckets, with the +Inf bucket Prometheus adds to every histogram.
LATENCY_BOUNDS: tuple[float, ...] = (*LATENCY_BUCKETS, float("inf"))
PROBABILITY_BOUNDS: tuple[float, ...] = (*PROBABILITY_BUCKETS, float("inf"))


@dataclass(frozen=True)
class TrafficModel:
    """How one version behaves: the knobs the benchmark's scenarios turn."""

    error_rate: float = 0.005
    latency_median_s: float = 0.004
    latency_sigma: float = 0.5  # of log latency
    score_shift: float = 0.0  # added to the logit of every prediction (a biased model)

    def slower(self, factor: float) -> TrafficModel:
        return replace(self, latency_median_s=self.latency_median_s * factor)


def _bucketed(values: np.ndarray, bounds: tuple[float, ...]) -> Histogram:
    idx = np.searchsorted(np.asarray(bounds), values, side="left")
    counts = np.bincount(idx, minlength=len(bounds))[: len(bounds)]
    return Histogram(bounds, tuple(int(c) for c in counts))


def draw_counters(model: TrafficModel, n: int, rng: np.random.Generator) -> VersionCounters:
    errors = int(rng.binomial(n, model.error_rate)) if n else 0
    latency = np.exp(rng.normal(np.log(model.latency_median_s), model.latency_sigma, n))
    # The population's risk score: a logistic score whose distribution both versions share;
    # a shifted model adds a constant to it.
    score = rng.normal(-1.2, 1.3, n - errors) + model.score_shift
    prob = 1.0 / (1.0 + np.exp(-score))
    return VersionCounters(
        requests=n,
        errors=errors,
        latency=_bucketed(latency, LATENCY_BOUNDS),
        predictions=_bucketed(prob, PROBABILITY_BOUNDS),
    )


def draw_window(
    stable: TrafficModel,
    canary: TrafficModel,
    requests: int,
    canary_percent: int,
    rng: np.random.Generator,
) -> Window:
    n_canary = int(rng.binomial(requests, canary_percent / 100.0))
    return Window(
        stable=draw_counters(stable, requests - n_canary, rng),
        canary=draw_counters(canary, n_canary, rng),
    )
