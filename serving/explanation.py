"""Per-prediction feature contributions for `:explain`, in log-odds (margin) units.

XGBoost models: XGBoost's own exact TreeSHAP contributions (`pred_contribs=True`) on the
preprocessed columns, summed back to the original features: a numeric feature owns its column and
its missing-indicator column, a categorical feature owns its one-hot columns. Contributions plus
the bias equal the model's margin (log-odds of the probability).

Other estimators (fallback, `method="occlusion"`): each feature's contribution is the change in
margin when that feature alone is replaced by a baseline value taken from the training reference
profile (numeric: the reference median; categorical: the most frequent category). The bias is the
margin of the baseline row. For additive models (logistic regression) contributions plus bias equal
the margin exactly; otherwise `residual` carries the interaction part that is left over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xgboost as xgb
from sklearn.pipeline import Pipeline

from mlops_core.drift import ReferenceProfile
from mlops_core.errors import MlopsError
from mlops_core.schema import FeatureSchema

MISSING_CATEGORY = "__missing__"  # the training preprocessor's fill value for a missing category


class ExplainerUnavailable(MlopsError):
    """This model cannot be explained; the message says why."""


@dataclass(frozen=True)
class Explanation:
    """Binary and regression: (rows, features) and (rows,); multiclass adds a class axis after
    rows: (rows, classes, features) and (rows, classes), one margin (logit) per class."""

    method: str
    contributions: np.ndarray  # in schema order; log-odds (classes) or target units (regression)
    bias: np.ndarray
    margin: np.ndarray  # the model's log-odds (binary), per-class margins, or predicted value
    residual: np.ndarray  # margin - bias - sum(contributions); ~0 when exact


def _column_owners(pipeline: Pipeline, schema: FeatureSchema) -> np.ndarray:
    """For each preprocessed column, the index of the schema feature it came from."""
    preprocess = pipeline[:-1]
    names = [str(n) for n in preprocess.get_feature_names_out(schema.feature_names)]
    owner: dict[str, int] = {}
    for j, f in enumerate(schema.features):
        candidates = [f.name, f"missingindicator_{f.name}"]
        candidates += [f"{f.name}_{c}" for c in (*f.categories, MISSING_CATEGORY)]
        for c in candidates:
            owner.setdefault(c, j)
    unmapped = [n for n in names if n not in owner]
    if unmapped:
        raise ExplainerUnavailable(
            f"cannot map preprocessed columns {unmapped[:5]} back to schema features"
        )
    return np.array([owner[n] for n in names], dtype=np.intp)


class Explainer:
    def __init__(
        self, pipeline: Pipeline, schema: FeatureSchema, reference: ReferenceProfile | None
    ) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.estimator = pipeline[-1]
        self.is_xgboost = isinstance(self.estimator, xgb.XGBModel)
        if self.is_xgboost:
            self.method = "xgboost_pred_contribs"
            self.owners = _column_owners(pipeline, schema)
            best = getattr(self.estimator, "best_iteration", None)
            # Score with the same trees predict_proba uses (early stopping keeps extra trees).
            self.iteration_range = (0, int(best) + 1) if best is not None else (0, 0)
        else:
            # Classifiers are explained in margin units, regressors in the target's own units.
            output = getattr(pipeline, "decision_function", None)
            if output is None and schema.task == "regression":
                output = pipeline.predict
            if output is None:
                raise ExplainerUnavailable(
                    f"{type(self.estimator).__name__} has no decision_function to explain"
                )
            self.output: Callable[[np.ndarray], np.ndarray] = output
            if reference is None:
                raise ExplainerUnavailable(
                    "the occlusion fallback needs the version's reference.json for its baseline"
                )
            self.method = "occlusion"
            self.baseline = self._baseline_row(reference)

    def _baseline_row(self, reference: ReferenceProfile) -> np.ndarray:
        row = np.empty((1, len(self.schema.features)), dtype=object)
        for j, f in enumerate(self.schema.features):
            prof = reference.feature(f.name)
            if f.is_numeric:
                edges = prof.edges
                row[0, j] = float(edges[len(edges) // 2]) if edges else 0.0
            else:
                shares = prof.proportions[: len(prof.categories)]
                row[0, j] = prof.categories[int(np.argmax(shares))]
        return row

    def explain(self, rows: np.ndarray) -> Explanation:
        if self.is_xgboost:
            transformed = self.pipeline[:-1].transform(rows)
            raw = self.estimator.get_booster().predict(
                xgb.DMatrix(transformed),
                pred_contribs=True,
                iteration_range=self.iteration_range,
            )
            if raw.ndim == 2:  # one output (binary, regression): a class axis of one
                raw = raw[:, None, :]
            per_column, bias = raw[:, :, :-1], raw[:, :, -1]
            contributions = np.zeros((rows.shape[0], raw.shape[1], len(self.schema.features)))
            np.add.at(contributions.transpose(2, 0, 1), self.owners, per_column.transpose(2, 0, 1))
            margin = bias + per_column.sum(axis=2)
            return _squeezed(
                Explanation(self.method, contributions, bias, margin, np.zeros_like(margin))
            )
        n, k = rows.shape
        # One batched call: the rows, then each feature occluded in turn, then the baseline.
        stacked = np.concatenate([rows] + [rows.copy() for _ in range(k)] + [self.baseline])
        for j in range(k):
            stacked[n * (j + 1) : n * (j + 2), j] = self.baseline[0, j]
        margins = np.asarray(self.output(stacked), dtype=np.float64)
        if margins.ndim == 1:
            margins = margins[:, None]
        margin = margins[:n]  # (n, outputs)
        occluded = margins[n:-1].reshape(k, n, -1).transpose(1, 2, 0)  # (n, outputs, k)
        contributions = margin[:, :, None] - occluded
        bias = np.broadcast_to(margins[-1], margin.shape).copy()
        residual = margin - bias - contributions.sum(axis=2)
        return _squeezed(Explanation(self.method, contributions, bias, margin, residual))


def _squeezed(exp: Explanation) -> Explanation:
    """Drop the class axis when the model has one output (binary, regression)."""
    if exp.margin.shape[1] != 1:
        return exp
    return Explanation(
        exp.method,
        exp.contributions[:, 0, :],
        exp.bias[:, 0],
        exp.margin[:, 0],
        exp.residual[:, 0],
    )
