"""Training on Dask: the same registered artifact as `components.train`, from a partitioned Parquet
data set that never passes through the step's process.

What runs where:
- the data: `dask.dataframe.read_parquet` over a folder, a file or an `s3://` prefix (fsspec);
  each partition is read by the worker that processes it;
- validation statistics (rows, missing values per feature, rows per class), the train/holdout
  split and the early-stopping split (`random_split`, seeded: the same data and partitions give the
  same rows), the drift reference and the holdout evaluation: per partition on the workers, only
  small results (counts, quantiles, scores) come back;
- the booster: `xgboost.dask` with the estimator settings `components.train.build_estimator` gives.

The artifact is the same scikit-learn Pipeline the local path saves (`build_preprocessor` + an
`XGBClassifier`/`XGBRegressor`), so serving, the canary and the monitor load it unchanged. The
preprocessor is fitted from distributed statistics: a few-row summary frame carries each numeric
feature's median (dask's approximate quantile) and whether it has missing values (which decides
the imputer's indicator columns); the categories come from the schema, as locally. The booster
trained by Dask is loaded into the local estimator type through XGBoost's own JSON model format.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from components.dask_compute import ComputeError
from components.train import TrainParams, build_estimator, build_preprocessor, model_input
from mlops_core.drift import FeatureProfile, ReferenceProfile, with_counts
from mlops_core.errors import InvalidInputError
from mlops_core.schema import FeatureSchema
from mlops_core.target import prediction_score

DASK_ESTIMATORS = ("xgboost",)  # xgboost.dask is the one distributed trainer used here


def check_dask_estimator(estimator: str) -> None:
    """Refused before any work: only XGBoost trains on Dask."""
    if estimator not in DASK_ESTIMATORS:
        raise ComputeError(
            f"compute=dask trains {', '.join(DASK_ESTIMATORS)} only, not {estimator!r}: "
            "use compute=local for it, or estimator=xgboost"
        )


def read_dataset(uri: str) -> Any:
    """A lazy dask DataFrame over a Parquet folder, file or object-store prefix."""
    import dask.dataframe as dd

    try:
        return dd.read_parquet(uri)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise InvalidInputError(f"cannot read the Parquet data set {uri}: {e}") from e


@dataclass(frozen=True)
class DataStatistics:
    rows: int
    missing: dict[str, int]
    class_rows: dict[int, int]  # encoded class -> rows (classifiers); empty for regression

    def check(self, schema: FeatureSchema) -> None:
        """The local path's refusals (train_model), from counts."""
        if self.rows == 0:
            raise InvalidInputError("the training data set holds no rows")
        if schema.is_classifier:
            absent = [c for i, c in enumerate(schema.label_classes) if not self.class_rows.get(i)]
            if absent:
                raise InvalidInputError(
                    f"training data has no rows of class {absent} of target {schema.target!r}; "
                    "every class needs training rows"
                )


def data_statistics(ddf: Any, schema: FeatureSchema) -> DataStatistics:
    import dask

    if schema.target not in ddf.columns:
        raise InvalidInputError(f"training data lacks the target column {schema.target!r}")
    missing = [f for f in schema.feature_names if f not in ddf.columns]
    if missing:
        raise InvalidInputError(f"training data lacks the feature columns {missing}")
    rows, nulls = dask.compute(ddf.shape[0], ddf[schema.feature_names].isna().sum())
    class_rows: dict[int, int] = {}
    if schema.is_classifier:
        codes = encoded_target(ddf, schema)
        class_rows = {int(k): int(v) for k, v in codes.value_counts().compute().items()}
    return DataStatistics(int(rows), {k: int(v) for k, v in nulls.items()}, class_rows)


def encoded_target(ddf: Any, schema: FeatureSchema) -> Any:
    dtype = float if schema.task == "regression" else np.int64
    return ddf[schema.target].map_partitions(
        lambda s: pd.Series(schema.encode_target(s), index=s.index, dtype=dtype),
        meta=(schema.target, dtype),
    )


def fit_preprocessor(ddf: Any, schema: FeatureSchema) -> Any:
    """The local preprocessor, fitted on a summary frame with the data set's statistics."""
    import dask

    numeric = [f.name for f in schema.numeric_features]
    summary = pd.DataFrame({f.name: [f.categories[0]] * 3 for f in schema.categorical_features})
    if numeric:
        values = ddf[numeric].map_partitions(
            lambda p: p.apply(pd.to_numeric, errors="coerce").astype(float)
        )
        medians, has_missing = dask.compute(values.quantile(0.5), values.isna().any())
        for name in numeric:
            m = float(medians[name])
            summary[name] = [m, m, np.nan if bool(has_missing[name]) else m]
    pre = build_preprocessor(schema, scale=False)
    return pre.fit(model_input(summary, schema))


def _features(ddf: Any, pre: Any, schema: FeatureSchema) -> Any:
    """The transformed features per partition (a float32 dask DataFrame)."""
    width = len(pre.get_feature_names_out())
    columns = [f"f{i}" for i in range(width)]

    def transform(part: pd.DataFrame) -> pd.DataFrame:
        x = pre.transform(model_input(part, schema)).astype(np.float32)
        return pd.DataFrame(x, index=part.index, columns=columns)

    return ddf.map_partitions(transform, meta=pd.DataFrame(columns=columns, dtype=np.float32))


@dataclass(frozen=True)
class DaskTrainResult:
    pipeline: Pipeline
    params: dict[str, Any]
    best_iteration: int | None
    validation_rows: int
    train_rows: int


def train_on_dask(
    client: Any, train: Any, schema: FeatureSchema, params: TrainParams
) -> DaskTrainResult:
    """Fit the Pipeline on a dask DataFrame (features + target): xgboost.dask, early stopping on a
    seeded validation split of `train`."""
    import dask
    from xgboost import dask as dxgb

    check_dask_estimator(params.estimator)
    local = build_estimator(params, schema.task)
    fraction = params.validation_fraction
    fit_part, val_part = train.random_split([1 - fraction, fraction], random_state=params.seed)
    pre = fit_preprocessor(fit_part, schema)
    x_fit, x_val = _features(fit_part, pre, schema), _features(val_part, pre, schema)
    y_fit, y_val = encoded_target(fit_part, schema), encoded_target(val_part, schema)
    kind = dxgb.DaskXGBRegressor if schema.task == "regression" else dxgb.DaskXGBClassifier
    settings = local.get_params() | {"n_jobs": None}  # each worker uses its own threads
    model = kind(**settings)
    model.client = client
    model.fit(x_fit, y_fit, eval_set=[(x_val, y_val)], verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "booster.json")
        model.save_model(path)
        local.load_model(path)
    validation_rows, train_rows = (int(n) for n in dask.compute(y_val.size, train.shape[0]))
    return DaskTrainResult(
        pipeline=Pipeline([("preprocess", pre), ("model", local)]),
        params={**params.__dict__, "rows": train_rows, "compute": "dask"},
        best_iteration=int(model.best_iteration),
        validation_rows=validation_rows,
        train_rows=train_rows,
    )


def model_outputs(pipeline: Pipeline, ddf: Any, schema: FeatureSchema) -> Any:
    """The model's raw output per row, computed on the workers: a dask DataFrame with one column
    per class (classifiers) or `value`."""
    width = len(schema.label_classes) if schema.is_classifier else 1
    columns = [f"p{i}" for i in range(width)]

    def predict(part: pd.DataFrame) -> pd.DataFrame:
        x = model_input(part, schema)
        out = pipeline.predict_proba(x) if schema.is_classifier else pipeline.predict(x)
        return pd.DataFrame(
            np.asarray(out, float).reshape(len(part), width), index=part.index, columns=columns
        )

    return ddf.map_partitions(predict, meta=pd.DataFrame(columns=columns, dtype=float))


# --- the drift reference: mlops_core.drift's profiles from per-partition counts -----------------
def _numeric_profile(name: str, values: Any, bins: int) -> FeatureProfile:
    import dask

    # As `profile_numeric`: values that do not parse are missing.
    x = values.map_partitions(
        lambda s: pd.to_numeric(s, errors="coerce").astype(float), meta=(name, float)
    )
    qs = np.linspace(0, 1, bins + 1)[1:-1]
    cuts, rows = dask.compute(x.dropna().quantile(qs), x.size)
    present = np.asarray(cuts, float)
    edges: np.ndarray = np.unique(present[~np.isnan(present)])
    profile = FeatureProfile(name, "numeric", (), tuple(float(e) for e in edges), count=int(rows))
    return with_counts(profile, _summed_counts(profile, x))


def _categorical_profile(name: str, values: Any) -> FeatureProfile:
    import dask

    distinct, rows = dask.compute(values.dropna().astype(str).unique(), values.size)
    cats = tuple(sorted(str(v) for v in distinct))
    profile = FeatureProfile(name, "categorical", (), categories=cats, count=int(rows))
    return with_counts(profile, _summed_counts(profile, values))


def _summed_counts(profile: FeatureProfile, values: Any) -> np.ndarray:
    """Each partition's `FeatureProfile.bucket_counts`, added up."""
    parts = values.to_delayed()
    import dask

    counts = dask.compute(*[dask.delayed(profile.bucket_counts)(p) for p in parts])
    return np.sum(np.stack(counts), axis=0) if counts else np.zeros(0)


def reference_on_dask(
    ddf: Any, schema: FeatureSchema, *, predictions: Any | None, bins: int = 20
) -> ReferenceProfile:
    """`mlops_core.drift.profile_reference` for a dask DataFrame (quantile edges approximate)."""
    features = tuple(
        _numeric_profile(f.name, ddf[f.name], bins)
        if f.is_numeric
        else _categorical_profile(f.name, ddf[f.name])
        for f in schema.features
    )
    pred = _numeric_profile("prediction", predictions, bins) if predictions is not None else None
    return ReferenceProfile(features=features, prediction=pred)


def scores_of(outputs: Any, task: str) -> Any:
    """The monitored prediction per row (mlops_core.target.prediction_score), per partition."""
    return outputs.map_partitions(
        lambda p: pd.Series(prediction_score(p.to_numpy(), task), index=p.index, dtype=float),
        meta=("prediction", float),
    )


def holdout_outputs(pipeline: Pipeline, holdout: Any, schema: FeatureSchema) -> tuple[Any, Any]:
    """(encoded targets, raw outputs) of the holdout rows, scored on the workers; only these two
    small arrays come back for the metrics."""
    import dask

    y, out = dask.compute(encoded_target(holdout, schema), model_outputs(pipeline, holdout, schema))
    width_one = not schema.is_classifier
    return np.asarray(y), (out.to_numpy()[:, 0] if width_one else out.to_numpy())


def write_json(doc: dict[str, Any], path: str) -> None:
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)


def _fit_and_profile(
    client: Any, train: Any, schema: FeatureSchema, params: TrainParams
) -> tuple[DaskTrainResult, ReferenceProfile]:
    """Train, save nothing yet; the drift reference of the training rows and their predictions."""
    result = train_on_dask(client, train, schema, params)
    scores = scores_of(model_outputs(result.pipeline, train, schema), schema.task)
    return result, reference_on_dask(train, schema, predictions=scores)


def _summary(
    result: DaskTrainResult, stats: DataStatistics, schema: FeatureSchema, spec: Any
) -> dict[str, Any]:
    """`components.train.train_step`'s summary, plus where it ran."""
    positive = stats.class_rows.get(1, 0) / stats.rows if schema.task == "binary" else float("nan")
    return {
        "params": result.params,
        "best_iteration": result.best_iteration,
        "validation_rows": result.validation_rows,
        "train_rows": result.train_rows,
        "train_positive_rate": positive,
        "task": schema.task,
        "compute": {
            "compute": "dask",
            "workers": spec.workers,
            "worker_memory": spec.worker_memory,
            "worker_cpu": spec.worker_cpu,
        },
        "missing": stats.missing,
    }


def train_files_on_dask(
    *,
    train_path: str,
    schema_path: str,
    model_path: str,
    reference_path: str,
    summary_path: str,
    params: TrainParams,
    spec: Any,
) -> dict[str, Any]:
    """The pipeline's train step with compute=dask: `train_step`'s inputs and outputs (the
    training rows are already split from the holdout, which the evaluate step scores)."""
    from components.dask_compute import dask_client
    from components.train import save_model

    check_dask_estimator(params.estimator)  # before a cluster starts
    schema = FeatureSchema.load(schema_path)
    with dask_client(spec) as client:
        train = read_dataset(train_path)
        stats = data_statistics(train, schema)
        stats.check(schema)
        result, reference = _fit_and_profile(client, train, schema, params)
    save_model(result.pipeline, model_path)
    write_json(reference.to_dict(), reference_path)
    summary = _summary(result, stats, schema, spec)
    write_json(summary, summary_path)
    return summary


def train_dask_step(
    *,
    data_uri: str,
    schema_path: str,
    model_path: str,
    reference_path: str,
    summary_path: str,
    params: TrainParams,
    holdout_fraction: float,
    threshold: float,
    spec: Any,
) -> dict[str, Any]:
    """Training from a whole data set on Dask: split, statistics, training, reference and holdout
    metrics, all on the cluster `spec` (components.dask_compute) starts and stops."""
    from components.dask_compute import dask_client
    from components.evaluate import task_metrics
    from components.train import save_model

    check_dask_estimator(params.estimator)  # before a cluster starts
    schema = FeatureSchema.load(schema_path)
    with dask_client(spec) as client:
        ddf = read_dataset(data_uri)
        stats = data_statistics(ddf, schema)
        stats.check(schema)
        train, holdout = ddf.random_split(
            [1 - holdout_fraction, holdout_fraction], random_state=params.seed
        )
        result, reference = _fit_and_profile(client, train, schema, params)
        y, out = holdout_outputs(result.pipeline, holdout, schema)
    save_model(result.pipeline, model_path)
    write_json(reference.to_dict(), reference_path)
    summary = _summary(result, stats, schema, spec) | {
        "data_rows": stats.rows,
        "holdout_rows": len(y),
        "holdout_metrics": task_metrics(schema, y, out, threshold),
    }
    write_json(summary, summary_path)
    return summary
