from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mlops_control.experiments.bandit import (
    BanditPolicy,
    BanditState,
    bandit_step,
    bounded_step,
    start_bandit,
)
from mlops_control.experiments.errors import ExperimentEnded, ExperimentPolicyError
from mlops_control.experiments.evidence import ArmRewards, IntervalEvidence
from mlops_control.experiments.reward import RewardSpec
from mlops_control.rollout.window import Histogram, VersionCounters

ARMS = ("stable", "b", "c")
POLICY = BanditPolicy(reward=RewardSpec(task="binary", classes=(0, 1)), min_labelled_per_arm=50)


def bernoulli(labelled: int, correct: int, matured: int | None = None) -> ArmRewards:
    return ArmRewards(float(matured or labelled), float(labelled), float(correct), float(correct))


def drawn(rng: np.random.Generator, shares: dict[str, int], means: dict[str, float], n: int):
    out = {}
    for arm, p in shares.items():
        k = rng.binomial(n, p / 100)
        out[arm] = bernoulli(k, int(rng.binomial(k, means[arm])))
    return out


def run(
    policy: BanditPolicy, means: dict[str, float], intervals: int, n: int = 1000, seed: int = 1
):
    rng = np.random.default_rng(seed)
    state = start_bandit(policy, ARMS)
    history = [state.percents]
    decisions = []
    for t in range(intervals):
        evidence = IntervalEvidence(t, float(t), drawn(rng, state.percents, means, n))
        decision, state = bandit_step(policy, state, evidence)
        decisions.append(decision)
        history.append(state.percents)
        if decision.final:
            break
    return state, decisions, history


def test_shares_move_toward_the_best_arm_by_bounded_steps_and_keep_the_floor() -> None:
    means = {"stable": 0.70, "b": 0.74, "c": 0.66}
    policy = BanditPolicy(reward=POLICY.reward, min_labelled_per_arm=10**6)  # never stops
    state, decisions, history = run(policy, means, 40)
    assert history[0] == {"stable": 34, "b": 33, "c": 33}
    assert state.percents["b"] >= 85
    for before, after in itertools.pairwise(history):
        assert sum(after.values()) == 100
        assert min(after.values()) >= policy.floor_percent
        # whole percentages of a step of at most max_step_percent points (rounding: +1)
        assert max(abs(after[a] - before[a]) for a in ARMS) <= policy.max_step_percent + 1
    assert {d.action for d in decisions} == {"allocate"}


def test_a_clear_best_arm_is_declared_the_winner_and_the_experiment_ends() -> None:
    means = {"stable": 0.70, "b": 0.80, "c": 0.65}
    state, decisions, _ = run(POLICY, means, 200)
    assert decisions[-1].action == "winner", decisions[-1].reason
    assert state.winner == "b" and state.percents == {"stable": 0, "b": 100, "c": 0}
    assert decisions[-1].p_best["b"] > POLICY.win_probability
    assert decisions[-1].readout["b"].effect_low > 0  # its effect against the control
    with pytest.raises(ExperimentEnded, match="already declared 'b'"):
        bandit_step(POLICY, state, IntervalEvidence(10**6, 0.0, {}))


def test_equal_arms_are_not_declared_a_winner() -> None:
    means = dict.fromkeys(ARMS, 0.7)
    for seed in range(5):
        state, decisions, _ = run(POLICY, means, 60, seed=seed)
        assert state.winner is None, decisions[-1].reason


def test_a_step_for_an_interval_already_stepped_changes_nothing() -> None:
    state = start_bandit(POLICY, ARMS)
    ev = IntervalEvidence(7, 70.0, {"stable": bernoulli(300, 200), "b": bernoulli(300, 260)})
    first, after = bandit_step(POLICY, state, ev)
    again, same = bandit_step(POLICY, after, ev)
    older, same2 = bandit_step(POLICY, after, IntervalEvidence(6, 60.0, ev.rewards))
    assert again.action == older.action == "skip"
    assert same is after and same2 is after
    assert again.percents == first.percents


def test_the_state_survives_a_restart_as_json_and_steps_the_same() -> None:
    rng = np.random.default_rng(3)
    means = {"stable": 0.7, "b": 0.75, "c": 0.7}
    state = start_bandit(POLICY, ARMS)
    for t in range(5):
        _, state = bandit_step(
            POLICY, state, IntervalEvidence(t, t, drawn(rng, state.percents, means, 500))
        )
    saved = json.dumps(state.to_dict())  # what the annotation holds
    restored = BanditState.from_dict(json.loads(saved))
    assert restored == state
    ev = IntervalEvidence(5, 5.0, drawn(rng, state.percents, means, 500))
    assert bandit_step(POLICY, restored, ev)[0] == bandit_step(POLICY, state, ev)[0]
    policy_again = BanditPolicy.from_dict(json.loads(json.dumps(POLICY.to_dict())))
    assert policy_again == POLICY


def test_unlabelled_matured_predictions_do_not_count_as_failures() -> None:
    state = start_bandit(POLICY, ARMS[:2])
    # both arms right on 80% of their labels; "b" served ten times as many still unlabelled
    ev = IntervalEvidence(
        0, 0.0, {"stable": bernoulli(200, 160), "b": bernoulli(200, 160, matured=2000)}
    )
    decision, _ = bandit_step(POLICY, state, ev)
    assert decision.p_best["b"] == pytest.approx(0.5, abs=0.05)


def test_an_arm_failing_its_guardrails_is_dropped() -> None:
    bounds = (0.1, 0.5, float("inf"))
    ok = VersionCounters(1000, 0, Histogram(bounds, (990, 10, 0)), Histogram(bounds, (500, 500, 0)))
    failing = VersionCounters(
        500, 200, Histogram(bounds, (495, 5, 0)), Histogram(bounds, (250, 250, 0))
    )
    state = start_bandit(POLICY, ARMS)
    ev = IntervalEvidence(
        0, 0.0, {a: bernoulli(100, 70) for a in ARMS}, {"stable": ok, "b": ok, "c": failing}
    )
    decision, state = bandit_step(POLICY, state, ev)
    assert decision.action == "drop" and decision.dropped == ("c",)
    assert "errors" in state.guards["c"].failed
    assert decision.percents["c"] == 0 and sum(decision.percents.values()) == 100
    assert min(decision.percents[a] for a in ("stable", "b")) >= POLICY.floor_percent


def test_bounded_step_is_a_convex_move() -> None:
    moved = bounded_step({"a": 0.5, "b": 0.5}, {"a": 0.9, "b": 0.1}, 0.1)
    assert moved == pytest.approx({"a": 0.6, "b": 0.4})


@pytest.mark.parametrize(
    ("arms", "kw", "match"),
    [
        (ARMS, {"floor_percent": 40}, "exceed 100%"),
        (("a",), {}, "two or more"),
        (ARMS, {"discount": 0.0}, "discount"),
        (ARMS, {"win_probability": 1.0}, "win_probability"),
    ],
)
def test_bad_policies_are_refused(arms: tuple[str, ...], kw: dict, match: str) -> None:
    with pytest.raises(ExperimentPolicyError, match=match):
        start_bandit(BanditPolicy(reward=POLICY.reward, **kw), arms)
