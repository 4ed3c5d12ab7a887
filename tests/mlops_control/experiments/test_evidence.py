from __future__ import annotations

import pytest

from mlops_control.experiments.evidence import ArmRewards, LabelledPrediction, matured_rewards
from mlops_control.experiments.reward import RewardSpec

SPEC = RewardSpec(task="binary", classes=(0, 1))


def test_only_predictions_in_the_matured_window_count_and_unlabelled_is_not_failure() -> None:
    records = [
        LabelledPrediction("r1", "a", 10.0, 0.9, 1),  # correct
        LabelledPrediction("r2", "a", 20.0, 0.9, 0),  # wrong
        LabelledPrediction("r3", "a", 30.0, 0.9, None),  # matured, never labelled
        LabelledPrediction("r4", "a", 5.0, 0.9, 0),  # counted by an earlier step
        LabelledPrediction("r5", "a", 45.0, 0.9, 0),  # not matured yet
        LabelledPrediction("r6", "b", 15.0, 0.2, 0),
        LabelledPrediction("r7", "c", 15.0, 0.2, 0),  # not in the experiment
    ]
    out = matured_rewards(records, SPEC, since=5.0, until=40.0, versions=["a", "b"])
    assert out["a"] == ArmRewards(matured=3, labelled=2, total=1.0, squares=1.0)
    assert out["a"].mean == 0.5
    assert out["b"] == ArmRewards(matured=1, labelled=1, total=1.0, squares=1.0)
    assert set(out) == {"a", "b"}


def test_arm_rewards_mean_variance_and_discount() -> None:
    r = ArmRewards.of([1.0, 0.0, 1.0, 1.0], matured=5)
    assert (r.matured, r.labelled, r.mean) == (5, 4, 0.75)
    assert r.variance == pytest.approx(0.25)
    half = r.scaled(0.5)
    assert half.mean == r.mean and half.labelled == 2
    assert ArmRewards.from_dict(r.to_dict()) == r
