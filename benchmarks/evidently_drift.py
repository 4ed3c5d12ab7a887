"""Evidently's data drift preset on a reference and a current Parquet file; prints JSON.

Runs inside `.venv-evidently/` (Evidently's dependency tree conflicts with the project's), started
as a subprocess by benchmarks/bench_drift.py. Usage:
    python evidently_drift.py REFERENCE.parquet CURRENT.parquet NUMERIC,COLS CATEGORICAL,COLS
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def main() -> None:
    ref_path, cur_path, numeric, categorical = sys.argv[1:5]
    num, cat = numeric.split(","), categorical.split(",")
    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - start
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        method, value, threshold = config["method"], float(metric["value"]), config["threshold"]
        # p-value tests drift below the threshold; distances drift at or above it.
        drifted = value < threshold if "p_value" in method else value >= threshold
        columns[config["column"]] = {
            "method": method,
            "value": value,
            "threshold": threshold,
            "drifted": drifted,
        }
    print(json.dumps({"seconds": seconds, "columns": columns}))


if __name__ == "__main__":
    main()
