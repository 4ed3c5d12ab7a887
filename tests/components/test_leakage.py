"""Target leakage: a feature that alone predicts the target is named; honest features are not."""

from __future__ import annotations

import numpy as np
import pytest

from components.leakage import leaking_features, single_feature_scores
from mlops_core.cars_data import generate_cars
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from tests.tasks.datasets import bundled_frame, market_frame, settled_schema


def test_todays_return_leaks_the_markets_direction() -> None:
    df = market_frame()
    (found,) = leaking_features(df, settled_schema(df, "Direction"), 0.99)
    assert found.feature == "Today" and found.metric == "roc_auc" and found.score >= 0.99
    assert "Today alone reaches roc_auc" in found.describe()


def test_without_todays_return_nothing_leaks() -> None:
    df = market_frame().drop(columns=["Today"])
    scores = single_feature_scores(df, settled_schema(df, "Direction"), seed=0)
    assert set(scores) == {"Lag1", "Lag2", "Lag3", "Lag4", "Lag5", "Volume"}
    assert max(scores.values()) < 0.6  # lagged returns say next to nothing
    assert leaking_features(df, settled_schema(df, "Direction"), 0.99) == ()


def test_the_target_in_other_units_leaks_a_regression() -> None:
    df = generate_cars()
    found = leaking_features(df, settled_schema(df.drop(columns=["name", "car_id"]), "mpg"), 0.99)
    assert [(f.feature, f.metric) for f in found] == [("liters_per_100km", "r2")]


@pytest.mark.parametrize("name", ["breast_cancer", "iris", "wine", "diabetes"])
def test_strong_honest_features_are_not_called_leaks(name: str) -> None:
    # iris' petal length separates one class of three perfectly (a one-vs-rest AUC near 1); a
    # multiclass leak is judged on balanced accuracy instead, about 0.95 here.
    df, _, target = bundled_frame(name)
    assert leaking_features(df, settled_schema(df, target), 0.99) == ()


def test_the_churn_data_has_no_leak() -> None:
    assert leaking_features(generate_churn(5000, seed=3), CHURN_SCHEMA, 0.99) == ()


def test_a_categorical_code_of_the_label_leaks() -> None:
    df = market_frame()
    df["Outcome_code"] = np.where(df["Direction"] == "Up", "U", "D")
    df = df.drop(columns=["Today"])
    found = leaking_features(df, settled_schema(df, "Direction"), 0.99)
    assert [f.feature for f in found] == ["Outcome_code"]
