"""The baseline `make bench-canary` compares the engine with: an error-rate threshold that knows
the stable's rate, calibrated to the 1% false-rollback budget over the looks it is held for."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_canary import (
    baseline_decider,
    calibrate_threshold_for_looks,
    rollback_probability,
    simulate,
)
from benchmarks.canary_simulation import TrafficModel
from mlops_control.rollout.policy import RolloutPolicy

BASE_RATE, REQUESTS, PERCENT, BUDGET = 0.005, 1000, 10, 0.01


def held_equal_canaries(threshold: float, looks: int, rollouts: int, seed: int) -> float:
    """Share of equal canaries (the base rate) held at PERCENT for `looks` intervals that the
    threshold rule rolls back, simulated with plain binomial draws (not the exact formula)."""
    rng = np.random.default_rng(seed)
    n = rng.binomial(REQUESTS, PERCENT / 100.0, size=(rollouts, looks))
    errors = rng.binomial(n, BASE_RATE)
    rate = np.divide(errors, n, out=np.zeros(n.shape), where=n > 0)
    return float((rate > threshold).any(axis=1).mean())


def test_the_exact_rollback_probability_is_the_benchmarks_own_simulation() -> None:
    # A loose threshold (2%: at 100 canary requests, 3 errors fire) so the rate is large enough to
    # compare on a few hundred rollouts of the benchmark's simulator; exact: 61.6%.
    threshold, looks, rollouts = 0.02, 20, 400
    stable = TrafficModel(error_rate=BASE_RATE)
    outs = [
        simulate(baseline_decider(threshold), RolloutPolicy(), stable, stable,
                 requests_per_interval=REQUESTS, seed=s, hold_first_step=True,
                 cap_canary_requests=10**9, max_intervals=looks)
        for s in range(rollouts)
    ]  # fmt: skip
    measured = sum(o.rolled_back for o in outs) / rollouts
    assert all(o.intervals == looks for o in outs if not o.rolled_back)
    exact = rollback_probability(threshold, looks, BASE_RATE, REQUESTS, PERCENT)
    se = np.sqrt(exact * (1 - exact) / rollouts)
    assert abs(measured - exact) <= 4 * se, (measured, exact)


@pytest.mark.parametrize("looks", [6, 36, 95])
def test_the_fair_oracle_keeps_the_false_rollback_budget_over_its_looks(looks: int) -> None:
    threshold = calibrate_threshold_for_looks(looks, BASE_RATE, REQUESTS, PERCENT, BUDGET)
    assert rollback_probability(threshold, looks, BASE_RATE, REQUESTS, PERCENT) <= BUDGET
    # The fastest such rule: any lower threshold breaks the budget.
    lower = threshold * (1 - 1e-9)
    assert rollback_probability(lower, looks, BASE_RATE, REQUESTS, PERCENT) > BUDGET
    # Checked by simulation too (seeded; 3 standard errors over the budget at most).
    rollouts = 40_000
    measured = held_equal_canaries(threshold, looks, rollouts, seed=looks)
    assert measured <= BUDGET + 3 * np.sqrt(BUDGET * (1 - BUDGET) / rollouts), measured


def test_a_threshold_calibrated_for_fewer_looks_breaks_the_budget_when_held_longer() -> None:
    # What the old baseline did: calibrated over a short rollout, held for the power policy's
    # (about 95 looks). The check above would fail on it.
    short = calibrate_threshold_for_looks(6, BASE_RATE, REQUESTS, PERCENT, BUDGET)
    assert short < calibrate_threshold_for_looks(95, BASE_RATE, REQUESTS, PERCENT, BUDGET)
    assert held_equal_canaries(short, 95, 20_000, seed=1) > 5 * BUDGET
    assert rollback_probability(short, 95, BASE_RATE, REQUESTS, PERCENT) > 5 * BUDGET
