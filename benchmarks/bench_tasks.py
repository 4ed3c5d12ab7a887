"""Per-task quality on scikit-learn's bundled data sets: the platform's three estimators next to a
plain scikit-learn baseline fitted on the same train/holdout split.

The split is the pipeline's own (the ingest step with the declared default seed and holdout
fraction), the metric each task's gate compares (`roc_auc`, `macro_f1`, `rmse`) plus accuracy or
R². The baseline is a RandomForest (200 trees, default settings) on the raw numeric columns: what a
user would write in five lines. Run: `python benchmarks/bench_tasks.py` from the repository root.

`--serve-seconds N` also registers each data set's XGBoost model, serves it with `mlops serve` and
sends 1-row V1 requests from 4 client threads for N seconds: req/s, p50 and p99 per task (a
closed loop from Python, so a floor, not `make bench-serving`'s wrk figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.evaluate import evaluate_model, task_metrics
from components.ingest import ingest
from components.train import TrainParams, train_model
from mlops_core.estimators import ESTIMATORS_BY_TASK
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


def serve_throughput(tmp: Path, seconds: float, threads: int = 4) -> None:
    import httpx

    from tests.serving.harness import start_server, stop_server
    from tests.tasks.datasets import bundled_frame
    from tests.tasks.steps import run_steps

    registry = str(tmp / "registry")
    print("\n| data set | task | req/s (1 row, V1) | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for name in BUNDLED:
        csv, task, target = write_bundled_csv(name, tmp)
        run_steps(csv, target, tmp / f"run-{name}", registry_uri=registry, model_name=name)
        server = start_server(["--model", name, "--registry", registry], {}, tmp / f"{name}.log")
        df, _, _ = bundled_frame(name)
        body = {"instances": df.drop(columns=[target]).head(1).to_dict(orient="records")}
        url = f"{server.url}/v1/models/{name}:predict"
        latencies: list[float] = []
        lock = threading.Lock()

        def client(
            deadline: float,
            url: str = url,
            body: dict = body,
            latencies: list[float] = latencies,
            lock: threading.Lock = lock,
        ) -> None:
            mine = []
            with httpx.Client(timeout=30) as http:
                while time.perf_counter() < deadline:
                    start = time.perf_counter()
                    http.post(url, json=body).raise_for_status()
                    mine.append(time.perf_counter() - start)
            with lock:
                latencies.extend(mine)

        httpx.post(url, json=body, timeout=30).raise_for_status()  # warm
        deadline = time.perf_counter() + seconds
        workers = [threading.Thread(target=client, args=(deadline,)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stop_server(server)
        p50, p99 = np.percentile(latencies, [50, 99]) * 1000
        print(f"| {name} | {task} | {len(latencies) / seconds:.0f} | {p50:.1f} | {p99:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-seconds", type=float, default=0.0)
    args = parser.parse_args()
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
        for estimator in ESTIMATORS_BY_TASK[schema.task]:
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
    if args.serve_seconds:
        serve_throughput(tmp, args.serve_seconds)


if __name__ == "__main__":
    main()
