"""Estimators are named per task, and a name that does not fit is refused in words."""

from __future__ import annotations

import pytest

from mlops_core.estimators import (
    ESTIMATORS,
    ESTIMATORS_BY_TASK,
    EstimatorError,
    check_estimator,
    estimators_help,
)


def test_each_task_offers_names_that_say_what_they_fit() -> None:
    assert "logistic_regression" in ESTIMATORS_BY_TASK["binary"]
    assert "logistic_regression" in ESTIMATORS_BY_TASK["multiclass"]
    assert "logistic_regression" not in ESTIMATORS_BY_TASK["regression"]
    assert {"ridge", "linear_regression"} <= set(ESTIMATORS_BY_TASK["regression"])
    assert not {"ridge", "linear_regression"} & set(ESTIMATORS_BY_TASK["binary"])
    assert set(ESTIMATORS) == {e for names in ESTIMATORS_BY_TASK.values() for e in names}
    assert estimators_help() == (
        "binary, multiclass: xgboost | hist_gradient_boosting | logistic_regression; "
        "regression: xgboost | hist_gradient_boosting | ridge | linear_regression"
    )


@pytest.mark.parametrize(
    ("estimator", "task", "message"),
    [
        ("logistic_regression", "regression", "'logistic_regression' does not fit a regression"),
        ("ridge", "binary", "'ridge' does not fit a binary task; choose one of ['xgboost',"),
        ("rigde", "auto", "unknown estimator 'rigde'; choose one of binary, multiclass: xgboost"),
        ("xgboost", "clustering", "unknown task 'clustering'"),
    ],
)
def test_a_name_that_does_not_fit_is_refused(estimator: str, task: str, message: str) -> None:
    with pytest.raises(EstimatorError, match=message.replace("[", r"\[")):
        check_estimator(estimator, task)


def test_auto_accepts_any_name_some_task_offers() -> None:
    for name in ESTIMATORS:
        check_estimator(name, "auto")  # the data decides; ingest checks again
