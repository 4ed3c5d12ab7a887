"""The label store: live quality from labels that arrive later, and concept drift in it."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from components.train import TrainParams, model_input, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from serving.monitoring.feedback import (
    BadFeedback,
    FeedbackError,
    FeedbackStore,
    UnknownPrediction,
    expected_calibration_error,
)
from serving.prediction_observer import PredictionObserver


@pytest.fixture(scope="module")
def pipeline():  # a real model: the loop's signal is its quality on new labels
    params = TrainParams(estimator="logistic_regression")
    return train_model(generate_churn(4000, seed=0), CHURN_SCHEMA, params).pipeline


def serve_and_label(
    store: FeedbackStore, pipeline, scenario: str, rows: int, seed: int, min_tickets: int = 0
) -> None:
    df = generate_churn(rows, scenario=scenario, seed=seed)
    df = df[df["support_tickets_90d"] >= min_tickets].reset_index(drop=True)
    X = model_input(df, CHURN_SCHEMA)
    p = pipeline.predict_proba(X)[:, 1]
    for i in range(len(df)):
        store.observe(X[i : i + 1], p[i : i + 1], f"{scenario}-{seed}-{i}", "1")
    for i, label in enumerate(df["churned"]):
        store.add_label(f"{scenario}-{seed}-{i}", int(label))


def test_store_is_a_prediction_observer() -> None:
    assert isinstance(FeedbackStore(model="churn"), PredictionObserver)


def test_live_metrics_equal_sklearn_on_the_labelled_rows(pipeline) -> None:
    store = FeedbackStore(model="churn")
    df = generate_churn(600, seed=1)
    X = model_input(df, CHURN_SCHEMA)
    p = pipeline.predict_proba(X)[:, 1]
    store.observe(X, p, "batch-1", "1")  # one request id, 600 rows: labelled per row
    for i, y in enumerate(df["churned"]):
        assert store.add_label("batch-1", int(y), row=i) == "1"
    q = store.quality("1")
    y = df["churned"].to_numpy()
    assert q is not None and q.labelled == 600
    assert q.accuracy == pytest.approx(accuracy_score(y, p >= 0.5))
    assert q.log_loss == pytest.approx(log_loss(y, p), rel=1e-6)
    assert q.brier_score == pytest.approx(brier_score_loss(y, p))
    assert q.positive_rate == pytest.approx(y.mean())
    assert store.pending() == 0


def test_calibration_error_of_a_calibrated_and_a_skewed_predictor() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0, 1, 50000)
    y = (rng.uniform(0, 1, 50000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.2


def test_label_shift_shows_in_live_quality(pipeline) -> None:
    clean, drifted = FeedbackStore(model="churn"), FeedbackStore(model="churn")
    serve_and_label(clean, pipeline, "clean", 3000, seed=3)
    serve_and_label(drifted, pipeline, "label_shift", 3000, seed=3)
    before, after = clean.quality("1"), drifted.quality("1")
    assert before is not None and after is not None
    assert after.accuracy < before.accuracy - 0.05
    assert after.log_loss > before.log_loss + 0.1
    assert after.positive_rate > before.positive_rate + 0.15
    assert after.calibration_error > before.calibration_error + 0.1


def test_concept_drift_shows_in_live_quality_of_the_segment_it_hits(pipeline) -> None:
    # The generator's concept drift reverses the effect of support tickets: inputs are unchanged
    # (the input monitor stays quiet, see test_drift.py); labelled traffic of customers with
    # many tickets shows the model is now wrong for them.
    clean, drifted = FeedbackStore(model="churn"), FeedbackStore(model="churn")
    serve_and_label(clean, pipeline, "clean", 20000, seed=3, min_tickets=4)
    serve_and_label(drifted, pipeline, "concept_drift", 20000, seed=3, min_tickets=4)
    before, after = clean.quality("1"), drifted.quality("1")
    assert before is not None and after is not None
    assert after.labelled == before.labelled > 500
    assert after.accuracy < before.accuracy - 0.02
    assert after.calibration_error > before.calibration_error + 0.05
    assert abs(after.positive_rate - before.positive_rate) > 0.2


def test_bad_labels_and_unknown_ids_are_refused_with_reasons(pipeline) -> None:
    store = FeedbackStore(model="churn")
    X = model_input(generate_churn(3, seed=4), CHURN_SCHEMA)
    store.observe(X, np.array([0.1, 0.5, 0.9]), ["a", "b", "c"], "2")
    with pytest.raises(FeedbackError, match="label must be") as bad:
        store.add_label("a", 2)
    assert isinstance(bad.value, BadFeedback)
    with pytest.raises(FeedbackError, match="label must be"):
        store.add_label("a", "yes")
    with pytest.raises(FeedbackError, match="no prediction is waiting") as unknown:
        store.add_label("zzz", 1)
    assert isinstance(unknown.value, UnknownPrediction)
    assert store.add_label("a", 0) == "2"
    with pytest.raises(FeedbackError, match="already labelled"):
        store.add_label("a", 0)


def test_pending_predictions_are_bounded() -> None:
    store = FeedbackStore(model="churn", max_pending=100)
    X = model_input(generate_churn(150, seed=5), CHURN_SCHEMA)
    store.observe(X, np.full(150, 0.2), [f"r{i}" for i in range(150)], "1")
    assert store.pending() == 100
    with pytest.raises(FeedbackError, match="evicted"):
        store.add_label("r0", 1)
    store.add_label("r149", 1)


def test_labelled_traffic_becomes_a_training_frame(pipeline) -> None:
    store = FeedbackStore(model="churn")
    serve_and_label(store, pipeline, "covariate_shift", 400, seed=6)
    frame = store.labelled_frame(CHURN_SCHEMA.feature_names, CHURN_SCHEMA.target)
    assert list(frame.columns) == [*CHURN_SCHEMA.feature_names, "churned"]
    assert len(frame) == 400
    source = generate_churn(400, scenario="covariate_shift", seed=6)
    np.testing.assert_allclose(frame["monthly_charges"].astype(float), source["monthly_charges"])
    assert frame["churned"].tolist() == source["churned"].tolist()
    retrained = train_model(frame, CHURN_SCHEMA, TrainParams(estimator="logistic_regression"))
    assert retrained.params["rows"] == 400


def test_live_quality_metrics_exported(pipeline) -> None:
    store = FeedbackStore(model="churn")
    registry = CollectorRegistry()
    registry.register(store.collector())
    serve_and_label(store, pipeline, "clean", 500, seed=7)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    acc = families["mlops_live_accuracy"].samples[0]
    assert acc.labels == {"model": "churn", "version": "1"}
    assert acc.value == pytest.approx(store.quality("1").accuracy)
    assert families["mlops_feedback_labels"].samples[0].value == 500


def test_rows_of_one_request_are_labelled_and_evicted_one_by_one() -> None:
    store = FeedbackStore(model="churn", max_pending=8)
    X = model_input(generate_churn(10, seed=8), CHURN_SCHEMA)
    store.observe(X[:5], np.linspace(0.1, 0.5, 5), "old", "1")
    assert store.add_label("old", 1, row=3) == "1"
    with pytest.raises(UnknownPrediction):
        store.add_label("old", 1, row=3)  # labelled already
    with pytest.raises(UnknownPrediction):
        store.add_label("old", 1, row=5)  # no such row
    store.observe(X[5:10], np.full(5, 0.9), "new", "2")  # 4 + 5 waiting: the oldest row goes
    assert store.pending() == 8
    with pytest.raises(UnknownPrediction, match="evicted"):
        store.add_label("old", 0, row=0)
    store.add_label("old", 0, row=1)
    store.add_label("new", 1, row=4)
    assert store.pending() == 6
    frame = store.labelled_frame(CHURN_SCHEMA.feature_names, CHURN_SCHEMA.target)
    assert frame["churned"].tolist() == [1, 0, 1]
    np.testing.assert_allclose(
        frame["monthly_charges"].astype(float), X[[3, 1, 9], 1].astype(float)
    )
