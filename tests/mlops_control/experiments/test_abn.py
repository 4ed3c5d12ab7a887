from __future__ import annotations

import json

import numpy as np
import pytest

from mlops_control.experiments.abn import ABnPolicy, ABnState, abn_step, start_abn
from mlops_control.experiments.errors import ExperimentEnded, ExperimentPolicyError
from mlops_control.experiments.evidence import ArmRewards, IntervalEvidence
from mlops_control.experiments.reward import RewardSpec
from mlops_control.rollout.window import Histogram, VersionCounters

REGRESSION = RewardSpec(task="regression")
SHARES = {"stable": 50, "b": 25, "c": 25}


def errors_of(rng: np.random.Generator, n: int, scale: float) -> ArmRewards:
    """Rewards of n predictions whose absolute errors are exponential with mean `scale`."""
    return ArmRewards.of(-rng.exponential(scale, n), matured=n)


def run(policy: ABnPolicy, scales: dict[str, float], intervals: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    state = start_abn(policy)
    decision = None
    for t in range(intervals):
        rewards = {a: errors_of(rng, 4 * p, scales[a]) for a, p in policy.shares.items()}
        decision, state = abn_step(policy, state, IntervalEvidence(t, float(t), rewards))
        assert decision.percents == (policy.shares if not decision.final else decision.percents)
        if decision.final:
            break
    return decision, state


def test_the_better_version_wins_with_its_effect_and_an_always_valid_interval() -> None:
    policy = ABnPolicy(reward=REGRESSION, shares=SHARES)
    decision, state = run(policy, {"stable": 1.0, "b": 0.8, "c": 1.0}, 300)
    assert decision.action == "winner", decision.reason
    assert state.winner == "b" and decision.percents == {"stable": 0, "b": 100, "c": 0}
    b = decision.readout["b"]
    # the effect is in reward units: 0.2 less absolute error
    assert b.effect_low <= 0.2 <= b.effect_high and b.effect_low > 0
    assert b.low <= -0.8 <= b.high
    with pytest.raises(ExperimentEnded):
        abn_step(policy, state, IntervalEvidence(10**6, 0.0, {}))


def test_equal_versions_hold_at_their_fixed_shares() -> None:
    policy = ABnPolicy(reward=REGRESSION, shares=SHARES)
    decision, state = run(policy, dict.fromkeys(SHARES, 1.0), 150, seed=4)
    assert decision.action == "hold" and state.done is None
    assert decision.percents == SHARES
    r = decision.readout["b"]
    assert r.effect_low < 0 < r.effect_high


def test_a_guardrail_failure_stops_the_test_and_sends_traffic_back_to_the_control() -> None:
    bounds = (0.1, 0.5, float("inf"))
    preds = Histogram(bounds, (500, 500, 0))
    ok = VersionCounters(1000, 0, Histogram(bounds, (990, 10, 0)), preds)
    slow = VersionCounters(
        500, 0, Histogram(bounds, (100, 100, 300)), Histogram(bounds, (250, 250, 0))
    )
    policy = ABnPolicy(reward=REGRESSION, shares=SHARES)
    rewards = {a: ArmRewards.of(np.array([-1.0, -0.5]), 2) for a in SHARES}
    ev = IntervalEvidence(0, 0.0, rewards, {"stable": ok, "b": ok, "c": slow})
    decision, state = abn_step(policy, start_abn(policy), ev)
    assert decision.action == "stop" and state.done == "stop"
    assert decision.percents == {"stable": 100, "b": 0, "c": 0}
    assert set(decision.failed) == {"c"} and "latency" in decision.failed["c"]


def test_state_round_trips_through_json_and_steps_are_idempotent() -> None:
    policy = ABnPolicy(reward=REGRESSION, shares=SHARES)
    _, state = run(policy, {"stable": 1.0, "b": 0.95, "c": 1.0}, 5)
    restored = ABnState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    skip, same = abn_step(policy, restored, IntervalEvidence(state.interval, 0.0, {}))
    assert skip.action == "skip" and same is restored
    assert ABnPolicy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


@pytest.mark.parametrize(
    ("shares", "match"),
    [
        ({"stable": 50, "b": 40}, "sum to 100"),
        ({"stable": 100}, "two or more"),
        ({"stable": 100, "b": 0}, r"\[1, 99\]"),
    ],
)
def test_shares_kserve_cannot_serve_are_refused(shares: dict[str, int], match: str) -> None:
    with pytest.raises(ExperimentPolicyError, match=match):
        ABnPolicy(reward=REGRESSION, shares=shares)
