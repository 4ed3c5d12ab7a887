"""Train a model on a DataFrame and register it in one call, without running the pipeline.

For the demo's canary stage and the tests, which need registered versions quickly (a good one, or a
deliberately bad one trained on inverted labels); the pipeline's steps do the same with their own
validation, evaluation and gate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from components.train import TrainParams, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry


def train_and_register(
    registry: ModelRegistry,
    model: str,
    *,
    rows: int,
    seed: int,
    invert_labels: bool = False,
    random_labels: bool = False,
    estimator: str = "logistic_regression",
) -> int:
    """Train on the project's churn generator and register; `invert_labels` makes a bad version,
    `random_labels` (coin flips) one that guesses (about half its answers right)."""
    df = generate_churn(rows, seed=seed)
    if invert_labels:
        df[CHURN_SCHEMA.target] = 1 - df[CHURN_SCHEMA.target].astype(int)
    if random_labels:
        df[CHURN_SCHEMA.target] = np.random.default_rng(seed).integers(0, 2, len(df))
    result = train_model(
        df, CHURN_SCHEMA, TrainParams(estimator=estimator, seed=seed, n_estimators=100)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.skops")
        save_model(result.pipeline, path)
        mv = registry.register(
            model,
            path,
            schema=CHURN_SCHEMA,
            reference=profile_reference(df, CHURN_SCHEMA),
            params=result.params,
            estimator=estimator,
            data_source=f"generate_churn(rows={rows}, seed={seed})",
            tags=_purpose(invert_labels, random_labels),
        )
    return mv.version


def _purpose(invert_labels: bool, random_labels: bool) -> dict[str, str]:
    if invert_labels:
        return {"purpose": "trained on inverted labels (a bad version)"}
    if random_labels:
        return {"purpose": "trained on random labels (a guessing version)"}
    return {}
