"""`sequential.mean_confidence_sequence`: an interval for a mean that holds at every look."""

from __future__ import annotations

import math

import numpy as np

from mlops_control.rollout.sequential import mean_confidence_sequence

ALPHA, RUNS, SAMPLES, EVERY = 0.05, 1000, 4000, 20


def ever_excludes(rng: np.random.Generator, mean: float, interval) -> float:  # type: ignore[no-untyped-def]
    """Share of runs in which the interval, looked at every EVERY samples, ever misses `mean`."""
    x = rng.binomial(1, mean, size=(RUNS, SAMPLES)).astype(float)
    n = np.arange(EVERY, SAMPLES + 1, EVERY)
    sums, squares = np.cumsum(x, axis=1)[:, n - 1], np.cumsum(x * x, axis=1)[:, n - 1]
    missed = np.zeros(RUNS, dtype=bool)
    for j, k in enumerate(n):
        m = sums[:, j] / k
        var = np.maximum(squares[:, j] / k - m * m, 0) * k / (k - 1)
        for r in np.flatnonzero(~missed):
            low, high = interval(k, m[r], var[r])
            missed[r] = not low <= mean <= high
    return float(missed.mean())


def test_the_interval_holds_at_every_look_with_probability_one_minus_alpha() -> None:
    rng = np.random.default_rng(0)
    rate = ever_excludes(
        rng, 0.3, lambda n, m, v: mean_confidence_sequence(n, m, v, ALPHA, tightest_at=500)
    )
    assert rate <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS), rate


def test_a_fixed_sample_interval_looked_at_as_often_misses_far_more_often() -> None:
    # the reason for a confidence sequence: a 95% interval re-read 200 times is not 95%
    rng = np.random.default_rng(0)
    z = 1.959964
    rate = ever_excludes(
        rng, 0.3, lambda n, m, v: (m - z * math.sqrt(v / n), m + z * math.sqrt(v / n))
    )
    assert rate > 3 * ALPHA, rate


def test_the_interval_narrows_as_samples_come_and_is_unbounded_without_any() -> None:
    assert mean_confidence_sequence(0, float("nan"), 0.25, ALPHA, 500) == (-math.inf, math.inf)
    widths = [
        np.subtract(*mean_confidence_sequence(n, 0.5, 0.25, ALPHA, 500)[::-1])
        for n in (100, 1000, 10_000, 100_000)
    ]
    assert widths == sorted(widths, reverse=True)
    assert widths[2] < 0.06 and widths[3] < 0.02
