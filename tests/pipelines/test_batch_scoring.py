"""The batch scoring pipeline: golden YAML up to date, and a full kfp.local run (SubprocessRunner)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from pipelines.batch_scoring import (
    GOLDEN_YAML,
    compile_batch_scoring,
    run_batch_scoring_locally,
)
from tests.serving.harness import MODEL, register_test_models


def test_committed_yaml_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_batch_scoring(tmp_path / "batch_scoring.yaml")
    assert fresh.read_text() == GOLDEN_YAML.read_text(), (
        "pipelines/batch_scoring.yaml is stale: run `make compile` and commit it"
    )


def test_image_is_a_compile_time_argument(tmp_path: Path) -> None:
    doc, _platform = yaml.safe_load_all(
        compile_batch_scoring(tmp_path / "p.yaml", "reg.local/c:1").read_text()
    )
    images = {e["container"]["image"] for e in doc["deploymentSpec"]["executors"].values()}
    assert images == {"reg.local/c:1"}
    tasks = doc["root"]["dag"]["tasks"]
    assert tasks["batch-drift"]["dependentTasks"] == ["batch-score"]


@pytest.mark.slow
def test_kfp_local_scores_and_compares_with_the_reference(tmp_path: Path) -> None:
    models = register_test_models(tmp_path)
    df = generate_churn(800, seed=4).reset_index(drop=True)
    num = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
    df[num] = df[num].astype(float)
    df.loc[3, num] = math.inf
    df.to_parquet(tmp_path / "in.parquet")
    result = run_batch_scoring_locally(
        registry_uri=models.registry_uri,
        input_uri=str(tmp_path / "in.parquet"),
        work_dir=tmp_path / "work",
        model_name=MODEL,
        chunk_rows=250,
    )
    assert (result["rows"], result["scored"], result["rejected"]) == (800, 799, 1)
    assert result["model_version"] == models.xgboost_version
    scores = pd.read_parquet(result["output_uri"])
    assert len(scores) == 799 and scores["run_id"].nunique() == 1
    assert scores["run_id"][0] == result["run_id"] and result["run_id"]
    assert pd.read_parquet(result["rejected_uri"])["row"].tolist() == [3]
    assert result["drift"]["rows"] == 799
    assert {f["feature"] for f in result["drift"]["features"]} >= set(CHURN_SCHEMA.feature_names)


@pytest.mark.slow
def test_kfp_local_scores_a_parquet_folder_on_dask(tmp_path: Path) -> None:
    from pipelines.params import ComputeParams

    models = register_test_models(tmp_path)
    df = generate_churn(800, seed=4).reset_index(drop=True)
    num = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
    df[num] = df[num].astype(float)
    df.loc[503, num] = math.inf
    (tmp_path / "in").mkdir()
    df.iloc[:400].to_parquet(tmp_path / "in" / "part-0.parquet", row_group_size=200)
    df.iloc[400:].to_parquet(tmp_path / "in" / "part-1.parquet", row_group_size=200)
    result = run_batch_scoring_locally(
        registry_uri=models.registry_uri,
        input_uri=str(tmp_path / "in"),
        work_dir=tmp_path / "work",
        model_name=MODEL,
        chunk_rows=250,
        compute=ComputeParams(compute="dask", dask_workers=2, dask_worker_memory="1GiB"),
    )
    assert (result["rows"], result["scored"], result["rejected"]) == (800, 799, 1)
    assert pd.read_parquet(result["rejected_uri"])["row"].tolist() == [503]
    assert result["drift"]["rows"] == 799
