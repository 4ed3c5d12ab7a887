"""Labels keep the type the data writes them in (issue 25): CSV labels "007" and "010" were read
as the integers 7 and 10, so serving answered 10 and refused feedback with the data's own "010".
A real CSV through ingest, a trained and registered model, a real `mlops serve` over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from components import ingest as ingest_module
from components.train import TrainParams, save_model, train_model
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry
from mlops_core.schema import FeatureSchema
from mlops_core.target import labels_as_written
from pipelines.params import TrainingParams
from tests.serving.harness import start_server, stop_server


def _ingest(tmp_path: Path, csv: Path, target: str) -> tuple[object, FeatureSchema, Path]:
    out = {
        "train_path": str(tmp_path / "train.parquet"),
        "holdout_path": str(tmp_path / "holdout.parquet"),
        "schema_path": str(tmp_path / "schema.json"),
    }
    summary = ingest_module.ingest(
        **TrainingParams().for_step(
            ingest_module.ingest, data_source=str(csv), target=target, **out
        )
    )
    return summary, FeatureSchema.load(out["schema_path"]), Path(out["train_path"])


def _codes_csv(path: Path, codes: list[str], rows: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    label = rng.integers(0, len(codes), rows)
    df = pd.DataFrame(
        {
            "x1": label * 2.0 + rng.normal(0, 0.3, rows),
            "x2": rng.normal(0, 1, rows),
            "code": [codes[i] for i in label],
        }
    )
    path.write_text(df.to_csv(index=False))
    return df


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (["007", "010", "100"], ["007", "010", "100"]),  # codes with leading zeros: text
        (["10", "010"], ["10", "010"]),  # two different labels, not the class 10 twice
        (["+1", "2"], ["+1", "2"]),
        (["1", "0", None], [1.0, 0.0, None]),  # numbers written as numbers (NaN: float)
        (["1", "0"], [1, 0]),
        (["0.5", "-2", "1e3"], [0.5, -2.0, 1000.0]),
    ],
)
def test_a_label_column_is_text_unless_every_value_is_written_as_a_number(
    written: list[str | None], expected: list[object]
) -> None:
    got = [
        None if isinstance(v, float) and np.isnan(v) else v
        for v in labels_as_written(pd.Series(written, dtype=object)).tolist()
    ]
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]


def test_numeric_looking_codes_stay_strings_through_ingest(tmp_path: Path) -> None:
    _codes_csv(tmp_path / "codes.csv", ["007", "010", "100"])
    summary, schema, train = _ingest(tmp_path, tmp_path / "codes.csv", "code")
    assert summary.classes == ["007", "010", "100"] and schema.label_classes == (
        "007",
        "010",
        "100",
    )
    assert set(pd.read_parquet(train)["code"]) == {"007", "010", "100"}
    _codes_csv(tmp_path / "numbers.csv", ["1", "2", "3"])
    (tmp_path / "numbers").mkdir()
    summary, _, _ = _ingest(tmp_path / "numbers", tmp_path / "numbers.csv", "code")
    assert summary.classes == [1, 2, 3]


def test_serving_answers_and_takes_feedback_in_the_datas_own_labels(tmp_path: Path) -> None:
    _codes_csv(tmp_path / "codes.csv", ["007", "010", "100"])
    _, schema, train = _ingest(tmp_path, tmp_path / "codes.csv", "code")
    frame = pd.read_parquet(train)
    pipeline = train_model(frame, schema, TrainParams("logistic_regression")).pipeline
    save_model(pipeline, str(tmp_path / "m.skops"))
    registry = ModelRegistry(str(tmp_path / "registry"))
    mv = registry.register(
        "codes",
        str(tmp_path / "m.skops"),
        schema=schema,
        reference=profile_reference(frame, schema),
    )
    registry.set_champion("codes", mv.version, reason="labels test")
    server = start_server(
        ["--model", "codes", "--registry", str(tmp_path / "registry"), "--version", "champion"],
        {"MLOPS_API_TOKEN": ""},
        tmp_path / "server.log",
    )
    try:
        row = {"x1": 2.0, "x2": 0.0}  # x1 = 2 * class index: class 1, "010"
        answer = httpx.post(
            f"{server.url}/v1/models/codes:predict", json={"instances": [row]}, timeout=30
        ).json()
        assert answer["predictions"][0]["label"] == "010", answer
        feedback = f"{server.url}/v1/models/codes/feedback"
        given = {"request_id": answer["request_id"], "label": "010"}
        r = httpx.post(feedback, json=given, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        assert stop_server(server) == 0
