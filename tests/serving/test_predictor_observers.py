"""Observers see every successful prediction with the validated model input; they cannot break it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.train import model_input
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.jsonl_log import read_json_lines
from serving.model_bundle import load_registered
from serving.monitoring.prediction_log import PredictionLog
from serving.prediction_observer import SHADOW_HEADER, PredictionObserver
from serving.predictor import ChurnPredictor
from serving.request_validation import InvalidRequest
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, scoring_frame


class RecordingObserver:
    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, list[str] | str, str]] = []

    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
        features_used: list[dict[str, Any]] | None = None,
    ) -> None:
        self.calls.append((rows, probabilities, request_ids, model_version))


class BrokenObserver:
    def observe(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("observer bug")


def test_observers_get_validated_rows_and_probabilities(registered: RegisteredModels) -> None:
    bundle = load_registered(registered.registry_uri, MODEL, "champion")
    recorder = RecordingObserver()
    assert isinstance(recorder, PredictionObserver)
    predictor = ChurnPredictor(MODEL, bundle, observers=[BrokenObserver(), recorder])
    predictor.load()
    df = scoring_frame(6, seed=51)

    async def run() -> dict:
        try:
            good = await predictor.predict(
                {"instances": v1_instances(df)}, headers={"x-request-id": "obs-1"}
            )
            with pytest.raises(InvalidRequest):
                await predictor.predict({"instances": []}, headers={"x-request-id": "obs-2"})
            return good
        finally:
            predictor.stop()

    body = asyncio.run(run())
    assert len(recorder.calls) == 1  # the refused request is not observed
    rows, probs, request_id, version = recorder.calls[0]
    assert request_id == "obs-1" and version == str(registered.xgboost_version)
    expected_rows = model_input(df, CHURN_SCHEMA)
    assert rows.shape == expected_rows.shape
    np.testing.assert_array_equal(rows[:, 0].astype(float), expected_rows[:, 0].astype(float))
    assert list(rows[:, CHURN_SCHEMA.index_of("contract")]) == list(df["contract"])
    np.testing.assert_allclose(probs, [p["probability"] for p in body["predictions"]])
    np.testing.assert_allclose(probs, bundle.pipeline.predict_proba(expected_rows)[:, 1], rtol=1e-6)


def test_a_shadow_copy_is_answered_but_not_observed_and_the_log_has_scores(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    """The tee's copies (SHADOW_HEADER) stay out of the version's live record; a live request's
    prediction-log line carries its time and each row's score for the label join."""
    bundle = load_registered(registered.registry_uri, MODEL, "champion")
    recorder = RecordingObserver()
    log = PredictionLog(tmp_path / "predictions.jsonl", model=MODEL)
    predictor = ChurnPredictor(MODEL, bundle, observers=[recorder, log])
    predictor.load()
    body = {"instances": v1_instances(scoring_frame(3, seed=52))}

    async def run() -> tuple[dict, dict]:
        try:
            shadow = await predictor.predict(
                body, headers={"x-request-id": "copy-1", SHADOW_HEADER: "1"}
            )
            live = await predictor.predict(body, headers={"x-request-id": "live-1"})
            return shadow, live
        finally:
            predictor.stop()

    before = time.time()
    shadow, live = asyncio.run(run())
    log.flush()
    assert shadow["predictions"] == live["predictions"] and shadow["request_id"] == "copy-1"
    assert [c[2] for c in recorder.calls] == ["live-1"]
    lines = list(read_json_lines(tmp_path / "predictions.jsonl"))
    assert [line["request_id"] for line in lines] == ["live-1"]
    assert lines[0]["at"] >= before and lines[0]["rows"] == 3
    np.testing.assert_allclose(lines[0]["scores"], [p["probability"] for p in live["predictions"]])
