"""The predictor serves through the compiled fast path, or the Pipeline when it is switched off,
with the same probabilities either way, for every registered estimator."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from components.fast_inference import TOLERANCE, CompiledPipeline
from mlops_core.settings import load_settings
from serving.model_bundle import load_registered
from serving.predictor import ChurnPredictor
from serving.server import build_predictor
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, scoring_frame


@pytest.mark.parametrize("which", ["xgboost_version", "logistic_version"])
def test_fast_and_pipeline_paths_answer_alike(registered: RegisteredModels, which: str) -> None:
    bundle = load_registered(registered.registry_uri, MODEL, getattr(registered, which))
    fast = ChurnPredictor(MODEL, bundle)
    slow = ChurnPredictor(MODEL, bundle, fast_path=False)
    fast.load()
    slow.load()
    assert isinstance(fast.model, CompiledPipeline) and slow.model is bundle.pipeline
    body = {"instances": v1_instances(scoring_frame(50))}
    try:
        a = asyncio.run(fast.predict(body))["predictions"]
        b = asyncio.run(slow.predict(body))["predictions"]
    finally:
        fast.stop()
        slow.stop()
    pa, pb = (np.array([r["probability"] for r in x]) for x in (a, b))
    assert np.max(np.abs(pa - pb)) <= TOLERANCE


def test_the_setting_switches_the_path_off(
    registered: RegisteredModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = load_registered(registered.registry_uri, MODEL, "champion")
    monkeypatch.setenv("MLOPS_FAST_PATH", "false")
    off = build_predictor(bundle, load_settings(model_name=MODEL))
    monkeypatch.delenv("MLOPS_FAST_PATH")
    on = build_predictor(bundle, load_settings(model_name=MODEL))
    try:
        assert off.model is bundle.pipeline and isinstance(on.model, CompiledPipeline)
    finally:
        off.stop()
        on.stop()
