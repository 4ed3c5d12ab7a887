"""Target leakage: a feature that predicts the target almost perfectly on its own.

Such a feature is usually recorded after the outcome (today's return beside "did the market go
up today"), so the model learns it and nothing else, and fails once the feature is not known in
advance. Each feature gets a small decision tree of its own, fitted on part of the rows and scored
on the rest (ROC AUC for two classes, balanced accuracy for more, R^2 for regression); a score
at or above the threshold names the feature. (A one-vs-rest AUC would call iris' petal length a
leak: it separates one class of three perfectly; its balanced accuracy, about 0.95, does not.) A tree sees thresholds and category codes, so a
feature that leaks through a non-monotonic mapping is found as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlops_core.schema import Feature, FeatureSchema

_MAX_ROWS = 50_000  # a sample this large scores a single feature as well as all rows do
_MIN_ROWS = 20  # fewer: no held-out score worth reporting
_LEAVES = 32
METRIC = {"binary": "roc_auc", "multiclass": "balanced_accuracy", "regression": "r2"}


@dataclass(frozen=True)
class LeakageFinding:
    feature: str
    metric: str  # one of METRIC's values
    score: float

    def describe(self) -> str:
        return f"{self.feature} alone reaches {self.metric} {self.score:.4f} on held-out rows"


def _as_number(feature: Feature, raw: pd.Series) -> np.ndarray:
    """The column as floats a tree splits on: numbers, or category codes (NaN: missing/unknown)."""
    if feature.is_numeric:
        return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    codes = pd.Categorical(raw.astype("object").where(raw.notna(), None), feature.categories).codes
    return np.where(codes < 0, np.nan, codes).astype(float)


def _score(task: str, y_true: np.ndarray, model: Any, x: np.ndarray) -> float:
    if task == "regression":
        return float(r2_score(y_true, model.predict(x)))
    if task == "multiclass":
        return float(balanced_accuracy_score(y_true, model.predict(x)))
    if len(np.unique(y_true)) < 2 or len(model.classes_) < 2:
        return float("nan")
    return float(roc_auc_score(y_true == model.classes_[1], model.predict_proba(x)[:, 1]))


def single_feature_scores(df: pd.DataFrame, schema: FeatureSchema, seed: int) -> dict[str, float]:
    """Each feature's held-out score when it alone predicts the target (NaN: not scorable)."""
    if len(df) > _MAX_ROWS:
        df = df.sample(_MAX_ROWS, random_state=seed)
    if len(df) < _MIN_ROWS:
        return {}
    y = schema.encode_target(df[schema.target])
    stratify = y if schema.is_classifier and np.bincount(y).min() >= 2 else None
    idx_train, idx_test = train_test_split(
        np.arange(len(df)), test_size=0.3, random_state=seed, stratify=stratify
    )
    min_leaf = max(5, len(idx_train) // 500)
    out: dict[str, float] = {}
    for feature in schema.features:
        x = _as_number(feature, df[feature.name]).reshape(-1, 1)
        if np.isnan(x).all():
            out[feature.name] = float("nan")
            continue
        tree = DecisionTreeClassifier if schema.is_classifier else DecisionTreeRegressor
        model = tree(max_leaf_nodes=_LEAVES, min_samples_leaf=min_leaf, random_state=seed)
        model.fit(x[idx_train], y[idx_train])
        out[feature.name] = _score(schema.task, y[idx_test], model, x[idx_test])
    return out


def leaking_features(
    df: pd.DataFrame, schema: FeatureSchema, threshold: float, seed: int = 0
) -> tuple[LeakageFinding, ...]:
    """The features whose single-feature score is at least `threshold`, highest first."""
    metric = METRIC[schema.task]
    found = [
        LeakageFinding(name, metric, round(score, 6))
        for name, score in single_feature_scores(df, schema, seed).items()
        if np.isfinite(score) and score >= threshold
    ]
    return tuple(sorted(found, key=lambda f: -f.score))
