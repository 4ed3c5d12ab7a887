"""Batch scoring on Dask: the same scored and rejected tables as the local path, on a real
LocalCluster over real Parquet files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.batch_score import BatchScoreParams, score_batch
from components.batch_score_dask import parquet_pieces, score_batch_dask
from components.dask_compute import ComputeSpec
from components.train import TrainParams, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.errors import InvalidInputError
from mlops_core.registry import ModelRegistry

MODEL = "churn"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("batch-dask")
    train = generate_churn(3000, seed=11)
    pipeline = train_model(train, CHURN_SCHEMA, TrainParams("xgboost", n_estimators=60)).pipeline
    save_model(pipeline, str(root / "m.skops"))
    reg = ModelRegistry(str(root / "registry"))
    reference = profile_reference(
        train, CHURN_SCHEMA, predictions=predict_proba(pipeline, train, CHURN_SCHEMA)
    )
    mv = reg.register(MODEL, str(root / "m.skops"), schema=CHURN_SCHEMA, reference=reference)
    reg.set_champion(MODEL, mv.version, reason="batch dask tests")
    return str(root / "registry")


def _input(rows: int) -> pd.DataFrame:
    df = generate_churn(rows, seed=7).reset_index(drop=True)
    df.insert(0, "customer_id", [f"c{i:05d}" for i in range(rows)])
    num = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
    df[num] = df[num].astype(float)
    df.loc[5, num] = math.inf  # rejected: not finite
    df.loc[1450, CHURN_SCHEMA.categorical_features[0].name] = "martian"  # rejected: unknown
    return df


@pytest.mark.slow  # starts a LocalCluster
def test_dask_scores_and_rejects_exactly_like_the_local_path(registry: str, tmp_path: Path) -> None:
    df = _input(3000)
    single = tmp_path / "in.parquet"
    df.to_parquet(single, row_group_size=400)
    folder = tmp_path / "parts"  # the same rows as two files: row numbers count on across them
    folder.mkdir()
    df.iloc[:1700].to_parquet(folder / "part-0.parquet", row_group_size=400)
    df.iloc[1700:].to_parquet(folder / "part-1.parquet", row_group_size=400)

    def params(src: Path, out: str) -> BatchScoreParams:
        return BatchScoreParams(
            registry_uri=registry,
            model_name=MODEL,
            input_uri=str(src),
            output_uri=str(tmp_path / f"{out}.parquet"),
            run_id="r1",
            chunk_rows=300,
        )

    local = score_batch(params(single, "local"))
    seen: list[tuple[int, int | None]] = []
    spec = ComputeSpec(compute="dask", workers=2, worker_memory="1GiB")
    dask = score_batch_dask(params(folder, "dask"), spec, lambda n, t: seen.append((n, t)))

    assert (dask.rows, dask.scored, dask.rejected) == (local.rows, local.scored, local.rejected)
    assert dask.rejected == 2 and dask.reasons == local.reasons
    for name in ("local", "dask"):
        assert not list(tmp_path.glob(f".{name}*.partial"))
    scored_local = pd.read_parquet(tmp_path / "local.parquet")
    scored_dask = pd.read_parquet(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(scored_dask, scored_local)  # same rows, order, values, types
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "dask.rejected.parquet"),
        pd.read_parquet(tmp_path / "local.rejected.parquet"),
    )
    assert pd.read_parquet(tmp_path / "dask.rejected.parquet")["row"].tolist() == [5, 1450]
    assert seen[-1] == (3000, 3000) and [n for n, _ in seen] == sorted(n for n, _ in seen)


def test_row_groups_of_a_folder_are_numbered_on_across_files(tmp_path: Path) -> None:
    df = generate_churn(1000, seed=3)
    df.iloc[:600].to_parquet(tmp_path / "a.parquet", row_group_size=250)
    df.iloc[600:].to_parquet(tmp_path / "b.parquet", row_group_size=250)
    pieces, _ = parquet_pieces(str(tmp_path))
    assert [(p.first, p.rows) for p in pieces] == [
        (0, 250),
        (250, 250),
        (500, 100),
        (600, 250),
        (850, 150),
    ]
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 3


def test_a_folder_without_parquet_is_refused_before_a_cluster_starts(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match=r"no \.parquet files"):
        parquet_pieces(str(tmp_path / "empty"))
