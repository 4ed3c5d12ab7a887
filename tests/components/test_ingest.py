"""Ingest: synthetic data, a user's CSV/Parquet from a folder and over real HTTP, schema inference."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from components import ingest as ingest_module
from components.ingest import IngestError, arrow_safe, fingerprint, read_table
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.schema import FeatureSchema
from pipelines.params import TrainingParams


def ingest(**given):
    """The step function with the pipeline's declared defaults for what a test leaves out."""
    return ingest_module.ingest(**TrainingParams().for_step(ingest_module.ingest, **given))


def ingest_step(**given):
    return ingest_module.ingest_step(**TrainingParams().for_step(ingest_module.ingest, **given))


def _outputs(tmp_path: Path) -> dict[str, str]:
    return {
        "train_path": str(tmp_path / "train.parquet"),
        "holdout_path": str(tmp_path / "holdout.parquet"),
        "schema_path": str(tmp_path / "schema.json"),
    }


def test_synthetic_ingest_splits_and_keeps_the_churn_schema(tmp_path: Path) -> None:
    out = _outputs(tmp_path)
    summary = ingest(
        data_source="", target="churned", rows=1000, seed=3, holdout_fraction=0.25, **out
    )
    train, holdout = pd.read_parquet(out["train_path"]), pd.read_parquet(out["holdout_path"])
    assert (len(train), len(holdout)) == (750, 250)
    assert summary.train_rows == 750 and summary.rows == 1000
    assert FeatureSchema.load(out["schema_path"]) == CHURN_SCHEMA
    assert not summary.schema_inferred
    # stratified: both parts keep the base churn rate
    assert abs(train["churned"].mean() - holdout["churned"].mean()) < 0.02
    # the same inputs give the same fingerprint; other data gives another
    again = ingest(data_source="", target="churned", rows=1000, seed=3, **_outputs(tmp_path))
    other = ingest(data_source="", target="churned", rows=1000, seed=4, **_outputs(tmp_path))
    assert again.fingerprint == summary.fingerprint != other.fingerprint


def test_broken_data_survives_parquet_with_its_bad_values(tmp_path: Path) -> None:
    out = _outputs(tmp_path)
    ingest(data_source="", target="churned", scenario="broken", rows=500, **out)
    df = pd.concat([pd.read_parquet(out["train_path"]), pd.read_parquet(out["holdout_path"])])
    assert (df["monthly_charges"] == "n/a").sum() == 50
    assert df["tenure_months"].isna().sum() == 50


def test_user_csv_in_a_folder_gets_an_inferred_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    df = generate_churn(600, seed=5).rename(columns={"churned": "left"})
    df.iloc[:300].to_csv(data / "part-1.csv", index=False)
    df.iloc[300:].to_csv(data / "part-2.csv", index=False)
    out = _outputs(tmp_path)
    summary = ingest_step(
        data_source=str(data), target="left", summary_path=str(tmp_path / "s.json"), **out
    )
    schema = FeatureSchema.load(out["schema_path"])
    assert summary.schema_inferred and summary.rows == 600
    assert schema.target == "left"
    assert schema.feature("contract").categories == ("month-to-month", "one-year", "two-year")
    assert schema.feature("tenure_months").dtype == "int"
    assert (tmp_path / "s.json").read_text().count(summary.fingerprint) == 1


def test_a_given_schema_wins_over_inference(tmp_path: Path) -> None:
    src = tmp_path / "d.parquet"
    generate_churn(300).to_parquet(src)
    CHURN_SCHEMA.save(str(tmp_path / "given.json"))
    out = _outputs(tmp_path)
    summary = ingest(
        data_source=str(src), target="churned", schema_uri=str(tmp_path / "given.json"), **out
    )
    assert not summary.schema_inferred
    assert FeatureSchema.load(out["schema_path"]) == CHURN_SCHEMA


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_parquet_over_http(http_folder: tuple[str, Path], tmp_path: Path) -> None:
    url, root = http_folder
    generate_churn(400, seed=1).to_parquet(root / "churn.parquet")
    out = _outputs(tmp_path)
    summary = ingest(data_source=f"{url}/churn.parquet", target="churned", **out)
    assert summary.rows == 400
    assert summary.data_source == f"{url}/churn.parquet"
    assert read_table(f"{url}/churn.parquet").shape == (400, 12)


def test_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(IngestError, match="cannot tell the format"):
        read_table(str(tmp_path / "notes.json"))
    with pytest.raises(IngestError, match="does not exist"):
        read_table(str(tmp_path / "absent.csv"))
    generate_churn(50).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(IngestError, match="target column 'label' is not in"):
        ingest(data_source=str(tmp_path / "d.csv"), target="label", **_outputs(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IngestError, match=r"no \.csv or \.parquet"):
        read_table(str(empty))


def test_arrow_safe_and_fingerprint_see_every_value() -> None:
    df = pd.DataFrame({"x": [1.0, "n/a", None], "y": ["a", "b", None]})
    safe = arrow_safe(df)
    assert safe["x"].tolist() == ["1.0", "n/a", None]
    assert safe["y"].tolist() == ["a", "b", None]
    assert fingerprint(safe) != fingerprint(safe.assign(y=["a", "c", None]))


def _cars_csv(tmp_path: Path) -> str:
    from mlops_core.cars_data import generate_cars

    generate_cars().to_csv(tmp_path / "cars.csv", index=False)
    return str(tmp_path / "cars.csv")


def test_identifier_columns_are_set_aside_with_a_line_saying_so(tmp_path: Path, capsys) -> None:
    out = _outputs(tmp_path)
    summary = ingest_step(
        data_source=_cars_csv(tmp_path),
        target="mpg",
        summary_path=str(tmp_path / "summary.json"),
        **out,
    )
    assert list(summary.set_aside) == ["car_id", "name"]
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        f"set aside column 'car_id': {summary.set_aside['car_id']}",
        f"set aside column 'name': {summary.set_aside['name']}",
    ]
    schema = FeatureSchema.load(out["schema_path"])
    assert "name" not in schema.feature_names and "car_id" not in schema.feature_names
    assert "name" not in pd.read_parquet(out["train_path"]).columns
    assert schema.task == "regression"


def test_drop_and_max_categories_reach_the_schema(tmp_path: Path) -> None:
    out = _outputs(tmp_path)
    summary = ingest(
        data_source=_cars_csv(tmp_path),
        target="mpg",
        drop_columns="liters_per_100km, car_id",
        max_categories=400,
        **out,
    )
    schema = FeatureSchema.load(out["schema_path"])
    assert summary.set_aside == {
        "liters_per_100km": "dropped: --drop",
        "car_id": "dropped: --drop",
    }
    assert schema.feature("name").kind == "categorical"  # 400 allowed: a category after all
    assert "liters_per_100km" not in schema.feature_names


def test_drop_applies_to_a_given_schema_too(tmp_path: Path) -> None:
    CHURN_SCHEMA.save(str(tmp_path / "given.json"))
    generate_churn(300, seed=1).to_csv(tmp_path / "c.csv", index=False)
    out = _outputs(tmp_path)
    ingest(
        data_source=str(tmp_path / "c.csv"),
        target="churned",
        schema_uri=str(tmp_path / "given.json"),
        drop_columns="region",
        **out,
    )
    assert "region" not in FeatureSchema.load(out["schema_path"]).feature_names


def test_drop_refuses_unknown_columns_and_the_target(tmp_path: Path) -> None:
    csv = _cars_csv(tmp_path)
    with pytest.raises(
        IngestError, match=r"--drop names columns the data does not have: \['nme'\]"
    ):
        ingest(data_source=csv, target="mpg", drop_columns="nme", **_outputs(tmp_path))
    with pytest.raises(IngestError, match="--drop names the target column 'mpg'"):
        ingest(data_source=csv, target="mpg", drop_columns="mpg", **_outputs(tmp_path))


def test_an_estimator_unfit_for_the_settled_task_stops_ingest_before_any_output(
    tmp_path: Path,
) -> None:
    from mlops_core.estimators import EstimatorError

    out = _outputs(tmp_path)
    with pytest.raises(EstimatorError, match="'logistic_regression' does not fit a regression"):
        ingest(
            data_source=_cars_csv(tmp_path), target="mpg", estimator="logistic_regression", **out
        )
    assert not any(Path(p).exists() for p in out.values())
