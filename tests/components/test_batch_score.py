"""Batch scoring: a real registered model over real Parquet/CSV files, in chunks, bad rows aside."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.batch_score import (
    BatchScoreParams,
    NothingScoredError,
    arrow_memory_pool,
    drift_of_scores,
    read_chunks,
    rejected_path_for,
    score_batch,
)
from components.train import TrainParams, model_input, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.errors import InvalidInputError
from mlops_core.registry import ModelRegistry
from mlops_core.schema import SchemaError

MODEL = "churn"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    root = tmp_path_factory.mktemp("batch")
    train = generate_churn(3000, seed=11)
    pipeline = train_model(train, CHURN_SCHEMA, TrainParams("xgboost", n_estimators=60)).pipeline
    reference = profile_reference(
        train, CHURN_SCHEMA, predictions=predict_proba(pipeline, train, CHURN_SCHEMA)
    )
    save_model(pipeline, str(root / "m.skops"))
    reg = ModelRegistry(str(root / "registry"))
    mv = reg.register(MODEL, str(root / "m.skops"), schema=CHURN_SCHEMA, reference=reference)
    reg.set_champion(MODEL, mv.version, reason="batch tests")
    return str(root / "registry"), pipeline


def _input(path: Path, rows: int = 1000, *, broken: bool = True) -> pd.DataFrame:
    df = generate_churn(rows, seed=7).reset_index(drop=True)
    df.insert(0, "customer_id", [f"c{i:05d}" for i in range(rows)])
    if broken:
        num = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
        cat = CHURN_SCHEMA.categorical_features[0].name
        df[num] = df[num].astype(float)
        df.loc[5, num] = math.inf
        df.loc[450, cat] = "martian"
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, row_group_size=256)
    return df


def _texts(column: pd.Series) -> list[str | None]:
    return [None if pd.isna(v) else str(v) for v in column]


def _params(registry_uri: str, src: Path, out: Path, **kw) -> BatchScoreParams:
    return BatchScoreParams(
        registry_uri=registry_uri,
        model_name=MODEL,
        input_uri=str(src),
        output_uri=str(out),
        **kw,
    )


def test_scores_every_good_row_and_sets_bad_rows_aside(registry, tmp_path: Path) -> None:
    uri, pipeline = registry
    df = _input(tmp_path / "in.parquet")
    seen: list[tuple[int, int | None]] = []
    summary = score_batch(
        _params(
            uri, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=300, run_id="r1"
        ),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (summary.rows, summary.scored, summary.rejected) == (1000, 998, 2)
    assert summary.inference_path == "compiled" and summary.rows_per_s > 0
    assert seen[-1] == (1000, 1000) and len(seen) == 4  # 300-row chunks, progress after each

    out = pd.read_parquet(tmp_path / "out.parquet")
    good = df.drop(index=[5, 450])
    assert list(out["customer_id"]) == list(good["customer_id"])
    expected = pipeline.predict_proba(model_input(good, CHURN_SCHEMA))[:, 1]
    assert np.max(np.abs(out["probability"].to_numpy() - expected)) <= 1e-6
    assert set(out["model_version"]) == {1} and set(out["run_id"]) == {"r1"}
    assert list(out["label"]) == list((out["probability"] >= 0.5).astype(int))
    for f in CHURN_SCHEMA.features:  # the input's values, categorical ones dictionary-encoded
        if f.is_numeric:
            np.testing.assert_array_equal(out[f.name].to_numpy(float), good[f.name].to_numpy(float))
        else:
            assert _texts(out[f.name]) == _texts(good[f.name])

    rejected = pd.read_parquet(rejected_path_for(str(tmp_path / "out.parquet")))
    assert list(rejected["row"]) == [5, 450]
    assert "infinite" in rejected["reason"][0] and "unknown category" in rejected["reason"][1]
    assert rejected["customer_id"].tolist() == ["c00005", "c00450"]


def test_csv_in_text_that_is_not_a_number_is_rejected(registry, tmp_path: Path) -> None:
    uri, _ = registry
    src = tmp_path / "in.csv"
    df = _input(src, 400, broken=False)
    num = CHURN_SCHEMA.numeric_features[0].name
    text = src.read_text().splitlines()
    header = text[0].split(",")
    cells = text[11].split(",")
    cells[header.index(num)] = "twelve"
    text[11] = ",".join(cells)
    src.write_text("\n".join(text) + "\n")
    summary = score_batch(_params(uri, src, tmp_path / "o.parquet", chunk_rows=128))
    assert (summary.scored, summary.rejected) == (399, 1)
    rejected = pd.read_parquet(tmp_path / "o.rejected.parquet")
    assert rejected["row"].tolist() == [10]
    assert rejected["reason"][0] == f"feature '{num}': expected a number, got 'twelve'"
    assert len(pd.read_parquet(tmp_path / "o.parquet")) == 399 and len(df) == 400


def test_scores_from_a_csv_keep_the_types_a_parquet_input_keeps(registry, tmp_path: Path) -> None:
    # A CSV's feature columns are read as text (so "twelve" is a rejected row, not a failed file);
    # the scored rows' numeric features are numbers again, as from the same data in Parquet.
    uri, _ = registry
    _input(tmp_path / "in.csv", 600)
    _input(tmp_path / "in.parquet", 600)
    for name in ("in.csv", "in.parquet"):
        score_batch(_params(uri, tmp_path / name, tmp_path / f"{name}.out.parquet", chunk_rows=200))
    from_csv = pq.read_schema(tmp_path / "in.csv.out.parquet")
    from_parquet = pq.read_schema(tmp_path / "in.parquet.out.parquet")
    for f in CHURN_SCHEMA.numeric_features:
        assert from_csv.field(f.name).type == "double", f.name
        assert from_parquet.field(f.name).type in ("double", "int64"), f.name
    csv_out = pd.read_parquet(tmp_path / "in.csv.out.parquet")
    parquet_out = pd.read_parquet(tmp_path / "in.parquet.out.parquet")
    for f in CHURN_SCHEMA.numeric_features:  # same numbers, missing ones null in both
        np.testing.assert_array_equal(
            csv_out[f.name].to_numpy(float), parquet_out[f.name].to_numpy(float)
        )
    rejected = pd.read_parquet(tmp_path / "in.csv.out.rejected.parquet")
    assert rejected["row"].tolist() == [5, 450]  # still the text the file held


def test_an_all_rejected_csv_scores_nothing_and_keeps_every_row_aside(
    registry, tmp_path: Path
) -> None:
    # A run that scores nothing fails (issue 25) and writes no scores; the rejected rows keep
    # the CSV's numbers as numbers (issue 24, item 9), each with its reason.
    uri, _ = registry
    df = _input(tmp_path / "in.csv", 20, broken=False)
    df["contract"] = "martian"
    df.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(NothingScoredError, match="all 20 rows"):
        score_batch(_params(uri, tmp_path / "in.csv", tmp_path / "o.parquet"))
    assert not (tmp_path / "o.parquet").exists()
    rejected = pq.read_table(rejected_path_for(str(tmp_path / "o.parquet")))
    assert rejected.num_rows == 20


def test_chunks_never_exceed_the_bound(tmp_path: Path) -> None:
    _input(tmp_path / "in.parquet", broken=False)
    sizes = [b.num_rows for b in read_chunks(str(tmp_path / "in.parquet"), CHURN_SCHEMA, 100)]
    assert max(sizes) <= 100 and sum(sizes) == 1000


def test_chunks_scored_side_by_side_equal_one_at_a_time(registry, tmp_path: Path) -> None:
    """Chunks scored on several threads at once come out as one thread writes them: same rows in
    the input's order, same scores, same rejected row numbers."""
    _input(tmp_path / "in.parquet")
    tables = {}
    for threads in (1, 3):
        out = tmp_path / f"out-{threads}.parquet"
        summary = score_batch(
            _params(
                registry[0],
                tmp_path / "in.parquet",
                out,
                chunk_rows=64,
                run_id="r",
                threads=threads,
            )
        )
        assert (summary.rows, summary.rejected) == (1000, 2)
        tables[threads] = (pq.read_table(out), pq.read_table(rejected_path_for(str(out))))
    assert tables[3][0].equals(tables[1][0]) and tables[3][1].equals(tables[1][1])


def test_scoring_takes_arrows_buffers_from_jemalloc_and_gives_the_pool_back() -> None:
    import pyarrow as pa

    before = pa.default_memory_pool().backend_name
    with arrow_memory_pool():
        assert pa.default_memory_pool().backend_name == "jemalloc"
    assert pa.default_memory_pool().backend_name == before


def test_a_missing_input_is_a_user_error(registry, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        score_batch(_params(registry[0], tmp_path / "nope.parquet", tmp_path / "o.parquet"))


def test_errors_found_while_reading_reach_the_caller(registry, tmp_path: Path) -> None:
    # A file that is not Parquet, or lacks a feature column: a user error naming it.
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidInputError, match="is not a Parquet file"):
        score_batch(_params(registry[0], tmp_path / "junk.parquet", tmp_path / "o.parquet"))
    df = _input(tmp_path / "in.parquet", broken=False)
    df.drop(columns=[CHURN_SCHEMA.features[0].name]).to_parquet(tmp_path / "short.parquet")
    with pytest.raises(SchemaError, match="lacks feature column"):
        score_batch(_params(registry[0], tmp_path / "short.parquet", tmp_path / "o.parquet"))


def test_scored_output_feeds_the_drift_comparison(registry, tmp_path: Path) -> None:
    uri, _ = registry
    _input(tmp_path / "in.parquet", broken=False)
    score_batch(_params(uri, tmp_path / "in.parquet", tmp_path / "out.parquet"))
    doc = drift_of_scores(str(tmp_path / "out.parquet"), uri, MODEL)
    names = [f["feature"] for f in doc["features"]]
    assert "prediction" in names and set(CHURN_SCHEMA.feature_names) <= set(names)
    assert doc["rows"] == 1000

    mlops = str(Path(sys.executable).with_name("mlops"))
    shown = subprocess.run(
        [mlops, "monitor", "check", str(tmp_path / "out.parquet"), "--registry", uri],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "prediction" in shown and "1000 rows" in shown


def test_the_cli_scores_and_prints_the_summary(registry, tmp_path: Path) -> None:
    uri, _ = registry
    _input(tmp_path / "in.parquet")
    mlops = str(Path(sys.executable).with_name("mlops"))
    done = subprocess.run(
        [
            mlops,
            "batch",
            "score",
            "--registry",
            uri,
            "--model",
            MODEL,
            "--input",
            str(tmp_path / "in.parquet"),
            "--output",
            str(tmp_path / "s.parquet"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "998" in done.stdout and "rejected:" in done.stdout
    assert pq.read_metadata(tmp_path / "s.parquet").num_rows == 998
