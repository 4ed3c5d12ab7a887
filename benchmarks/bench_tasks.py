"""Per-task quality on scikit-learn's bundled data sets: the platform's three estimators next to a
plain scikit-learn baseline fitted on the same train/holdout split.

The split is the pipeline's own (the ingest step with the declared default seed and holdout
fraction), the metric each task's gate compares (`roc_auc`, `macro_f1`, `rmse`) plus accuracy or
R². The baseline is a RandomForest (200 trees, default settings) on the raw numeric columns: what a
user would write in five lines. Run: `python benchmarks/bench_tasks.py` from the repository root.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.evaluate import evaluate_model, task_metrics
from components.ingest import ingest
from components.train import ESTIMATORS, TrainParams, train_model
from mlops_core.schema import FeatureSchema
from pipelines.params import TrainingParams
from tests.tasks.datasets import BUNDLED, write_bundled_csv

SECOND = {"binary": "accuracy", "multiclass": "accuracy", "regression": "r2"}


def baseline(train: pd.DataFrame, holdout: pd.DataFrame, schema: FeatureSchema) -> dict:
    X, Xh = train[schema.feature_names], holdout[schema.feature_names]
    y, yh = schema.encode_target(train[schema.target]), schema.encode_target(holdout[schema.target])
    if schema.is_classifier:
        model = RandomForestClassifier(n_estimators=200, random_state=0).fit(X, y)
        out = model.predict_proba(Xh)
    else:
        model = RandomForestRegressor(n_estimators=200, random_state=0).fit(X, y)
        out = model.predict(Xh)
    return task_metrics(schema, yh, np.asarray(out, float), 0.5)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    defaults = TrainingParams()
    print("| data set | task | rows (train/holdout) | model | primary metric | value | second |")
    print("|---|---|---|---|---|---:|---:|")
    for name in BUNDLED:
        csv, _, target = write_bundled_csv(name, tmp)
        out = {k: str(tmp / f"{name}.{k}") for k in ("train_path", "holdout_path", "schema_path")}
        ingest(**defaults.for_step(ingest, data_source=str(csv), target=target, **out))
        schema = FeatureSchema.load(out["schema_path"])
        train, holdout = pd.read_parquet(out["train_path"]), pd.read_parquet(out["holdout_path"])
        rows = f"{len(train)}/{len(holdout)}"
        for estimator in ESTIMATORS:
            model = train_model(train, schema, TrainParams(estimator, seed=defaults.seed)).pipeline
            ev = evaluate_model(model, holdout, schema, **defaults.for_step(evaluate_model))
            m, second = ev.primary_metric, SECOND[schema.task]
            print(
                f"| {name} | {schema.task} | {rows} | {estimator} | {m} | "
                f"{ev.metrics[m]:.4f} | {second} {ev.metrics[second]:.4f} |"
            )
        b = baseline(train, holdout, schema)
        m = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}[schema.task]
        second = SECOND[schema.task]
        print(
            f"| {name} | {schema.task} | {rows} | sklearn RandomForest (baseline) | {m} | "
            f"{b[m]:.4f} | {second} {b[second]:.4f} |"
        )


if __name__ == "__main__":
    main()
