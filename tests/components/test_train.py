"""Train: each estimator name builds the model it says, for its task, and no other."""

from __future__ import annotations

import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from components.train import TrainParams, train_model
from mlops_core.estimators import EstimatorError
from tests.tasks.datasets import bundled_frame, settled_schema


@pytest.mark.parametrize(
    ("estimator", "kind"), [("ridge", Ridge), ("linear_regression", LinearRegression)]
)
def test_regression_names_fit_what_they_say(estimator: str, kind: type) -> None:
    df, _, target = bundled_frame("diabetes")
    model = train_model(df, settled_schema(df, target), TrainParams(estimator)).pipeline
    assert type(model.named_steps["model"]) is kind
    assert "scale" in dict(model.named_steps["preprocess"].transformers_[0][1].steps)


def test_logistic_regression_is_a_classifier_only() -> None:
    df, _, target = bundled_frame("breast_cancer")
    model = train_model(df, settled_schema(df, target), TrainParams("logistic_regression"))
    assert type(model.pipeline.named_steps["model"]) is LogisticRegression
    df, _, target = bundled_frame("diabetes")
    with pytest.raises(EstimatorError, match="does not fit a regression task"):
        train_model(df, settled_schema(df, target), TrainParams("logistic_regression"))


def test_an_unknown_name_is_refused_when_the_params_are_made() -> None:
    with pytest.raises(EstimatorError, match="unknown estimator 'ridge_regression'"):
        TrainParams("ridge_regression")
