"""The fast path gives the Pipeline's probabilities (max |diff| <= 1e-6) for every estimator, and
falls back to the Pipeline, with a log line, for what it cannot compile."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from components.evaluate import extreme_inputs
from components.fast_inference import (
    SMALL_BATCH,
    TOLERANCE,
    CompiledPipeline,
    NotCompilable,
    compile_pipeline,
    fast_model,
    model_output,
    probe_rows,
)
from components.train import TrainParams, model_input, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.estimators import ESTIMATORS_BY_TASK
from mlops_core.row_checks import CodedColumn
from mlops_core.schema import FeatureSchema


@pytest.fixture(scope="module")
def data():
    df = generate_churn(3000, scenario="clean", seed=5)
    return df.iloc[:2200].reset_index(drop=True), df.iloc[2200:].reset_index(drop=True)


@pytest.fixture(scope="module", params=ESTIMATORS_BY_TASK["binary"])
def pipeline(request, data):
    params = TrainParams(estimator=request.param, n_estimators=60, seed=3)
    return train_model(data[0], CHURN_SCHEMA, params).pipeline


def _max_diff(pipeline, rows: np.ndarray) -> float:
    compiled = compile_pipeline(pipeline)
    return float(np.max(np.abs(compiled.predict_proba(rows) - pipeline.predict_proba(rows))))


def test_every_estimator_compiles(pipeline) -> None:
    assert isinstance(fast_model(pipeline, CHURN_SCHEMA), CompiledPipeline)


def test_holdout_matches_the_pipeline(pipeline, data) -> None:
    rows = model_input(data[1], CHURN_SCHEMA)
    assert _max_diff(pipeline, rows) <= TOLERANCE


def test_extreme_inputs_match_the_pipeline(pipeline) -> None:
    rows = model_input(extreme_inputs(CHURN_SCHEMA), CHURN_SCHEMA)
    assert _max_diff(pipeline, rows) <= TOLERANCE


def test_probe_rows_cover_every_branch_and_match(pipeline) -> None:
    rows = probe_rows(CHURN_SCHEMA)
    for j, f in enumerate(CHURN_SCHEMA.features):
        col = list(rows[:, j])
        if f.is_numeric:
            assert any(isinstance(v, float) and np.isnan(v) for v in col)
        else:
            assert None in col and "__unseen__" in col and set(f.categories) <= set(col)
    assert _max_diff(pipeline, rows) <= TOLERANCE


def test_large_batches_take_the_vectorised_encoding_and_match(pipeline) -> None:
    # Probe rows (every category, None, unseen, NaN) repeated past SMALL_BATCH: the pandas
    # hash-table encoding must agree with the per-value dict lookup and with the Pipeline.
    rows = np.concatenate([probe_rows(CHURN_SCHEMA)] * (SMALL_BATCH // 4))
    assert len(rows) >= SMALL_BATCH
    compiled = compile_pipeline(pipeline)
    big = compiled.predict_proba(rows)
    small = np.concatenate(
        [compiled.predict_proba(rows[i : i + 10]) for i in range(0, len(rows), 10)]
    )
    assert np.max(np.abs(big - small)) <= 1e-12  # same encoding; BLAS may block rows differently
    assert _max_diff(pipeline, rows) <= TOLERANCE


def test_coded_columns_encode_as_object_columns_do(pipeline) -> None:
    # Batch scoring hands categorical features over as codes into their distinct values
    # (Arrow dictionaries): the same matrix, and the Pipeline's probabilities, as str/None objects.
    rows = np.concatenate([probe_rows(CHURN_SCHEMA)] * 3)
    columns: list = []
    for j, f in enumerate(CHURN_SCHEMA.features):
        col = rows[:, j]
        if f.is_numeric:
            columns.append(col.astype(np.float64))
            continue
        values = sorted({v for v in col if v is not None}, reverse=True)  # not the schema's order
        codes = np.array([-1 if v is None else values.index(v) for v in col], np.intp)
        columns.append(CodedColumn(codes, tuple(values)))
    compiled = compile_pipeline(pipeline)
    np.testing.assert_array_equal(compiled.transform_columns(columns), compiled.transform(rows))
    diff = np.abs(compiled.predict_proba_columns(columns) - pipeline.predict_proba(rows))
    assert np.max(diff) <= TOLERANCE


def test_single_rows_match(pipeline, data) -> None:
    rows = model_input(data[1].head(20), CHURN_SCHEMA)
    compiled = compile_pipeline(pipeline)
    for i in range(len(rows)):
        one = rows[i : i + 1]
        assert (
            np.max(np.abs(compiled.predict_proba(one) - pipeline.predict_proba(one))) <= TOLERANCE
        )


def test_an_unknown_step_falls_back_with_a_log_line(pipeline, data, caplog) -> None:
    pre, est = pipeline.steps[0][1], pipeline.steps[1][1]
    odd = Pipeline([("preprocess", pre), ("minmax", MinMaxScaler()), ("model", est)])
    with pytest.raises(NotCompilable):
        compile_pipeline(odd)
    with caplog.at_level(logging.WARNING, logger="components.fast_inference"):
        assert fast_model(odd, CHURN_SCHEMA) is odd
    assert "using the scikit-learn Pipeline" in caplog.text


def test_a_compiled_path_that_disagrees_falls_back(pipeline, monkeypatch, caplog) -> None:
    real = CompiledPipeline.transform

    def wrong(self, rows):  # a bug in a compiled step: the probe check must catch it
        return np.roll(real(self, rows), 1, axis=1)

    monkeypatch.setattr(CompiledPipeline, "transform", wrong)
    with caplog.at_level(logging.WARNING, logger="components.fast_inference"):
        assert fast_model(pipeline, CHURN_SCHEMA) is pipeline
    assert "differs from the Pipeline" in caplog.text


# --- every task: multiclass (string labels) and regression, on the churn features ---------------
def _task_frame(task: str) -> tuple[pd.DataFrame, FeatureSchema]:
    df = generate_churn(2400, seed=9).reset_index(drop=True)
    if task == "multiclass":
        df["tier"] = pd.cut(df["total_charges"].fillna(0), 3, labels=["low", "mid", "high"]).astype(
            str
        )
        schema = FeatureSchema(
            features=CHURN_SCHEMA.features,
            target="tier",
            task="multiclass",
            classes=("high", "low", "mid"),
        )
    else:
        df["spend"] = df["total_charges"].fillna(0) * 1.1 + df["tenure_months"]
        schema = FeatureSchema(features=CHURN_SCHEMA.features, target="spend", task="regression")
    return df, schema


@pytest.mark.parametrize(
    ("task", "estimator"),
    [(t, e) for t in ("multiclass", "regression") for e in ESTIMATORS_BY_TASK[t]],
)
def test_every_task_matches_the_pipeline(task: str, estimator: str) -> None:
    df, schema = _task_frame(task)
    train, holdout = df.iloc[:1800], df.iloc[1800:]
    pipeline = train_model(
        train, schema, TrainParams(estimator=estimator, n_estimators=40)
    ).pipeline
    model = fast_model(pipeline, schema)
    assert isinstance(model, CompiledPipeline) and model.is_regressor == (task == "regression")
    for rows in (
        model_input(holdout, schema),
        model_input(extreme_inputs(schema), schema),
        probe_rows(schema),
    ):
        diff = np.max(np.abs(model_output(model, rows) - model_output(pipeline, rows)))
        assert diff <= TOLERANCE
    rows = model_input(holdout.head(5), schema)
    if task == "regression":  # what the predictor's TaskOutputs calls for each task
        assert np.max(np.abs(model.predict(rows) - pipeline.predict(rows))) <= TOLERANCE
    else:
        assert model.predict_proba(rows).shape == (5, 3)
