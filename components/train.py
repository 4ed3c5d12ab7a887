"""Train: a scikit-learn Pipeline (preprocessing + estimator), saved with skops.

The whole Pipeline is the artifact, so the predictor never re-implements a feature. Columns are
selected by position in schema order: the same Pipeline accepts a DataFrame from the training step
and a NumPy object array from the predictor's fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from mlops_core.estimators import LINEAR_ESTIMATORS, check_estimator
from mlops_core.schema import FeatureSchema
from mlops_core.step_timing import timed_step
from mlops_core.target import prediction_score


@dataclass(frozen=True)
class TrainParams:
    estimator: str  # no default: the pipeline's (pipelines/params.py) is the one declaration
    seed: int = 42
    validation_fraction: float = 0.2
    n_estimators: int = 400
    learning_rate: float = 0.08
    max_depth: int = 4
    early_stopping_rounds: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_estimator(self.estimator, "auto")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError("validation_fraction must be in (0, 0.5)")


@dataclass(frozen=True)
class TrainResult:
    pipeline: Pipeline
    params: dict[str, Any]
    best_iteration: int | None
    validation_rows: int


def build_preprocessor(schema: FeatureSchema, *, scale: bool) -> ColumnTransformer:
    num_idx = [schema.index_of(f.name) for f in schema.numeric_features]
    cat_idx = [schema.index_of(f.name) for f in schema.categorical_features]
    num_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    ]
    if scale:
        num_steps.append(("scale", StandardScaler()))
    categories = [list(f.categories) for f in schema.categorical_features]
    cat = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="constant", fill_value="__missing__", missing_values=None),
            ),
            # Known categories come from the schema, so a category absent from one training sample
            # still gets its column; unseen ones encode as all zeros.
            (
                "onehot",
                OneHotEncoder(
                    categories=[[*c, "__missing__"] for c in categories],
                    handle_unknown="ignore",
                    sparse_output=False,
                ),
            ),
        ]
    )
    ct = ColumnTransformer(
        [("numeric", Pipeline(num_steps), num_idx), ("categorical", cat, cat_idx)],
        verbose_feature_names_out=False,
    )
    return ct


def model_input(df: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """The model's input: feature columns in schema order as an object array.

    Numeric columns are floats with NaN for missing; categorical columns are str or None.
    """
    frame = schema.coerce_frame(df)
    return frame.to_numpy(dtype=object)


def build_estimator(params: TrainParams, task: str = "binary") -> Any:
    """The estimator `params.estimator` names for `task` (mlops_core.estimators lists which)."""
    check_estimator(params.estimator, task)
    regression = task == "regression"
    if params.estimator == "xgboost":
        model, metric = (
            (XGBRegressor, "rmse")
            if regression
            else (XGBClassifier, "logloss" if task == "binary" else "mlogloss")
        )
        return model(
            n_estimators=params.n_estimators,
            learning_rate=params.learning_rate,
            max_depth=params.max_depth,
            subsample=0.9,
            colsample_bytree=0.9,
            eval_metric=metric,
            early_stopping_rounds=params.early_stopping_rounds,
            random_state=params.seed,
            n_jobs=1,
            tree_method="hist",
        )
    if params.estimator == "hist_gradient_boosting":
        model = HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier
        return model(
            max_iter=params.n_estimators,
            learning_rate=params.learning_rate,
            max_depth=params.max_depth,
            early_stopping=True,
            validation_fraction=params.validation_fraction,
            n_iter_no_change=params.early_stopping_rounds,
            random_state=params.seed,
        )
    if params.estimator == "ridge":
        return Ridge(alpha=1.0)
    if params.estimator == "linear_regression":
        return LinearRegression()
    return LogisticRegression(max_iter=2000, C=1.0, random_state=params.seed)


def train_model(df: pd.DataFrame, schema: FeatureSchema, params: TrainParams) -> TrainResult:
    """Fit the Pipeline on `df` (features + target). Deterministic for a given seed."""
    if schema.target not in df.columns:
        raise ValueError(f"training data lacks the target column {schema.target!r}")
    y = schema.encode_target(df[schema.target])
    if schema.is_classifier:
        absent = sorted(set(range(len(schema.label_classes))) - set(np.unique(y).tolist()))
        if absent:
            missing = [schema.label_classes[i] for i in absent]
            raise ValueError(
                f"training data has no rows of class {missing} of target {schema.target!r}; "
                "every class needs training rows"
            )
    elif len(np.unique(y)) < 2:
        raise ValueError(f"target {schema.target!r} is constant; nothing to learn")
    X = model_input(df, schema)
    est = build_estimator(params, schema.task)  # first: an estimator unfit for the task refused
    pre = build_preprocessor(schema, scale=params.estimator in LINEAR_ESTIMATORS)
    best_iteration: int | None = None
    validation_rows = 0
    if params.estimator == "xgboost":
        # Early stopping needs a transformed validation set; the preprocessor is fitted on the
        # training split only so the validation score stays honest.
        X_tr, X_val, y_tr, y_val = train_test_split(
            X,
            y,
            test_size=params.validation_fraction,
            random_state=params.seed,
            stratify=y if schema.is_classifier else None,
        )
        pre.fit(X_tr)
        est.fit(pre.transform(X_tr), y_tr, eval_set=[(pre.transform(X_val), y_val)], verbose=False)
        best_iteration = int(est.best_iteration)
        validation_rows = len(y_val)
        pipeline = Pipeline([("preprocess", pre), ("model", est)])
    else:
        pipeline = Pipeline([("preprocess", pre), ("model", est)]).fit(X, y)
        if params.estimator == "hist_gradient_boosting":
            best_iteration = int(est.n_iter_)
    return TrainResult(
        pipeline=pipeline,
        params={**params.__dict__, "rows": len(df)},
        best_iteration=best_iteration,
        validation_rows=validation_rows,
    )


def predict_proba(pipeline: Pipeline, df: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """Positive-class probability for the rows of `df` (a binary model)."""
    return pipeline.predict_proba(model_input(df, schema))[:, 1]


def predict_output(pipeline: Pipeline, df: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """The model's raw output: class probabilities (rows, classes) or values (rows,)."""
    X = model_input(df, schema)
    return pipeline.predict_proba(X) if schema.is_classifier else pipeline.predict(X)


def save_model(pipeline: Pipeline, path: str) -> None:
    sio.dump(pipeline, path)


def _positive_rate(df: pd.DataFrame, schema: FeatureSchema) -> float:
    """Binary: the positive class's share (the validate step's label-shift reference); else NaN."""
    if schema.task != "binary":
        return float("nan")
    return float((schema.encode_target(df[schema.target]) == 1).mean())


@timed_step("train")
def train_step(
    *,
    train_path: str,
    schema_path: str,
    model_path: str,
    reference_path: str,
    summary_path: str,
    params: TrainParams,
) -> dict[str, Any]:
    """The pipeline step: fit on the train Parquet, save the model and its drift reference.

    The reference profile includes the model's own predictions on its training data, so the live
    monitor can watch prediction drift as well as feature drift.
    """
    import json

    from mlops_core.drift import profile_reference

    schema = FeatureSchema.load(schema_path)
    df = pd.read_parquet(train_path)
    result = train_model(df, schema, params)
    save_model(result.pipeline, model_path)
    scores = prediction_score(predict_output(result.pipeline, df, schema), schema.task)
    reference = profile_reference(df, schema, predictions=scores)
    with open(reference_path, "w") as fh:
        json.dump(reference.to_dict(), fh)
    summary = {
        "params": result.params,
        "best_iteration": result.best_iteration,
        "validation_rows": result.validation_rows,
        "train_rows": len(df),
        "train_positive_rate": _positive_rate(df, schema),
        "task": schema.task,
    }
    with open(summary_path, "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
