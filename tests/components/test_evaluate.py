"""Evaluate: metrics against sklearn, slices, and the three ML tests on real trained models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import ClassificationMetrics, Metrics
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from components.evaluate import (
    Evaluation,
    classification_metrics,
    differential_test,
    evaluate_model,
    evaluate_step,
    extreme_input_test,
    extreme_inputs,
    invariance_test,
)
from components.train import TrainParams, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.registry import ModelRegistry
from mlops_core.slices import SliceMetrics
from pipelines.params import TrainingParams

FAST = TrainParams(estimator="xgboost", n_estimators=60, seed=1)


@pytest.fixture(scope="module")
def data():
    df = generate_churn(3000, seed=21)
    return df.iloc[:2200].reset_index(drop=True), df.iloc[2200:].reset_index(drop=True)


@pytest.fixture(scope="module")
def model(data):
    return train_model(data[0], CHURN_SCHEMA, FAST).pipeline


def test_metrics_match_sklearn(data, model) -> None:
    holdout = data[1]
    y = holdout["churned"].to_numpy()
    p = predict_proba(model, holdout, CHURN_SCHEMA)
    m = classification_metrics(y, p, 0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert 0.7 < m["roc_auc"] < 1.0


def test_evaluation_has_slices_tests_and_kfp_metrics(data, model) -> None:
    ev = evaluate_model(
        model,
        data[1],
        CHURN_SCHEMA,
        **TrainingParams().for_step(evaluate_model, slice_column="contract"),
    )
    assert set(ev.slices) == {"month-to-month", "one-year", "two-year"}
    assert sum(s["rows"] for s in ev.slices.values()) == len(data[1])
    assert [t.name for t in ev.tests] == ["differential", "extreme_inputs", "invariance"]
    assert ev.tests_passed, [t.detail for t in ev.tests]
    assert np.array(ev.confusion_matrix).sum() == len(data[1])
    assert Evaluation.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    assert ev.slice_record() == SliceMetrics("contract", "binary", ev.slices)
    assert replace(ev, slice_column="", slices={}).slice_record() is None  # nothing to keep
    from components.evaluate import log_evaluation

    metrics, classification = Metrics(), ClassificationMetrics()
    log_evaluation(ev, metrics, classification)
    assert metrics.metadata["roc_auc"] == pytest.approx(ev.metrics["roc_auc"], abs=1e-6)
    assert "contract=two-year/roc_auc" in metrics.metadata
    assert classification.metadata["confusionMatrix"]["rows"][0]["row"] == ev.confusion_matrix[0]
    assert len(classification.metadata["confidenceMetrics"]) == len(ev.roc_curve["fpr"])


def test_extreme_inputs_do_not_crash_a_trained_model(model) -> None:
    frame = extreme_inputs(CHURN_SCHEMA)
    assert frame.isna().all(axis=1).any()  # an all-missing row
    assert (frame["payment_method"] == "__never_seen_category__").any()
    result = extreme_input_test(model, CHURN_SCHEMA)
    assert result.passed, result.detail
    assert 0.0 <= result.values["min_p"] <= result.values["max_p"] <= 1.0


def test_extreme_input_test_catches_a_model_without_imputation(data) -> None:
    numeric = [f.name for f in CHURN_SCHEMA.numeric_features]
    # A real sklearn Pipeline that cannot handle missing values or categories.
    raw = Pipeline([("model", LogisticRegression(max_iter=5000))])
    train = data[0][numeric].fillna(0)
    raw.fit(train.to_numpy(), data[0]["churned"])
    result = extreme_input_test(raw, CHURN_SCHEMA)
    assert not result.passed
    assert "crashed" in result.detail


def test_invariance_holds_for_region_and_fails_for_a_feature_the_label_uses(data, model) -> None:
    ok = invariance_test(model, data[1], CHURN_SCHEMA, tolerance=0.02)
    assert ok.passed, ok.detail
    assert ok.values["region_mean_shift"] < 0.02
    # Make the label depend on region: the same test must now fail.
    leaky = data[0].assign(churned=(data[0]["region"] == "east").astype(int))
    leaky_model = train_model(leaky, CHURN_SCHEMA, FAST).pipeline
    bad = invariance_test(leaky_model, data[1], CHURN_SCHEMA, tolerance=0.02)
    assert not bad.passed
    assert "region moves predictions" in bad.detail


def test_differential_test() -> None:
    first = differential_test({"roc_auc": 0.8}, None, primary_metric="roc_auc", max_regression=0.01)
    # Nothing to compare: skipped with the reason, neither passed nor failed.
    assert first.skipped and not first.passed and not first.failed and "no champion" in first.detail
    worse = differential_test(
        {"roc_auc": 0.78}, {"roc_auc": 0.8}, primary_metric="roc_auc", max_regression=0.01
    )
    assert not worse.passed
    lower_is_better = differential_test(
        {"log_loss": 0.40}, {"log_loss": 0.45}, primary_metric="log_loss", max_regression=0.0
    )
    assert lower_is_better.passed
    assert lower_is_better.values["improvement"] == pytest.approx(0.05)


def test_step_scores_the_champion_on_the_same_holdout(tmp_path: Path, data, model) -> None:
    from mlops_core.drift import profile_reference

    holdout_path = tmp_path / "holdout.parquet"
    data[1].to_parquet(holdout_path)
    schema_path = tmp_path / "schema.json"
    CHURN_SCHEMA.save(str(schema_path))
    champ_path = tmp_path / "champ.skops"
    champion = train_model(data[0], CHURN_SCHEMA, TrainParams("logistic_regression")).pipeline
    save_model(champion, str(champ_path))
    registry = ModelRegistry(str(tmp_path / "registry"))
    mv = registry.register(
        "churn",
        str(champ_path),
        schema=CHURN_SCHEMA,
        reference=profile_reference(data[0], CHURN_SCHEMA),
    )
    registry.set_champion("churn", mv.version, reason="test")
    cand_path = tmp_path / "cand.skops"
    save_model(model, str(cand_path))
    ev = evaluate_step(
        **TrainingParams().for_step(
            evaluate_model,
            model_path=str(cand_path),
            holdout_path=str(holdout_path),
            schema_path=str(schema_path),
            evaluation_path=str(tmp_path / "evaluation.json"),
            registry_uri=str(tmp_path / "registry"),
            model_name="churn",
        )
    )
    assert ev.champion_version == 1
    expected = roc_auc_score(data[1]["churned"], predict_proba(champion, data[1], CHURN_SCHEMA))
    assert ev.champion_metrics["roc_auc"] == pytest.approx(expected)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["champion_version"] == 1
