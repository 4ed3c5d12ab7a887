from __future__ import annotations

import numpy as np
import pytest

from mlops_control.experiments.reward import RewardError, RewardSpec


def test_binary_correct_is_the_default_and_uses_the_threshold() -> None:
    spec = RewardSpec(task="binary", classes=("no", "yes"), threshold=0.7)
    assert spec.kind == "correct"
    r = spec.rewards(np.array([1, 1, 0, 0]), np.array([0.8, 0.6, 0.6, 0.2]))
    assert r.tolist() == [1.0, 0.0, 1.0, 1.0]


def test_log_loss_is_minus_the_log_probability_of_the_label() -> None:
    spec = RewardSpec(task="binary", kind="log_loss", classes=(0, 1))
    r = spec.rewards(np.array([1, 0]), np.array([0.9, 0.9]))
    assert r == pytest.approx([np.log(0.9), np.log(0.1)])
    # a certain wrong answer costs a finite amount
    assert np.isfinite(spec.rewards(np.array([1]), np.array([0.0]))).all()


def test_regression_rewards_minus_the_absolute_error() -> None:
    spec = RewardSpec(task="regression")
    assert spec.rewards(np.array([3.0, 1.0]), np.array([2.5, 4.0])).tolist() == [-0.5, -3.0]


def test_multiclass_correct_compares_class_indices() -> None:
    spec = RewardSpec(task="multiclass", classes=("a", "b", "c"))
    assert spec.rewards(np.array([2, 0, 1]), np.array([2, 1, 1])).tolist() == [1.0, 0.0, 1.0]


def test_a_user_table_prices_each_label_and_prediction_in_the_users_labels() -> None:
    # a missed churner costs more than a needless retention offer
    table = {"stay": {"stay": 1.0, "churn": -0.2}, "churn": {"stay": -5.0, "churn": 2.0}}
    spec = RewardSpec(task="binary", kind="table", classes=("stay", "churn"), table=table)
    r = spec.rewards(np.array([0, 0, 1, 1]), np.array([0.1, 0.9, 0.1, 0.9]))
    assert r.tolist() == [1.0, -0.2, -5.0, 2.0]
    again = RewardSpec.from_dict(spec.to_dict())
    assert again.rewards(np.array([1]), np.array([0.1])).tolist() == [-5.0]


def test_a_table_missing_a_pair_is_refused_and_named() -> None:
    with pytest.raises(RewardError, match="missing"):
        RewardSpec(task="binary", kind="table", classes=(0, 1), table={"0": {"0": 1, "1": 0}})


def test_a_table_naming_an_unknown_label_is_refused() -> None:
    table = {"0": {"0": 1, "1": 0, "2": 0}, "1": {"0": 0, "1": 1}}
    with pytest.raises(RewardError, match="does not have"):
        RewardSpec(task="binary", kind="table", classes=(0, 1), table=table)


def test_a_reward_that_does_not_fit_the_task_is_refused() -> None:
    with pytest.raises(RewardError, match="does not fit a regression task"):
        RewardSpec(task="regression", kind="correct")
    with pytest.raises(RewardError, match="needs the model's classes"):
        RewardSpec(task="binary")
