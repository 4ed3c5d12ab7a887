"""Training on Dask: the same model and the same gate as local training on the same data, from a
partitioned Parquet folder on a real LocalCluster."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier

from components.dask_compute import ComputeError, ComputeSpec, dask_client
from components.evaluate import evaluate_model
from components.gate import decide
from components.train import TrainParams, train_model
from components.train_dask import check_dask_estimator, train_dask_step
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import ReferenceProfile, profile_reference
from mlops_core.registry import ModelRegistry

SPEC = ComputeSpec(compute="dask", workers=2, worker_memory="1GiB")


def _evaluate(pipeline: Pipeline, holdout: object) -> object:
    return evaluate_model(
        pipeline,
        holdout,
        CHURN_SCHEMA,
        threshold=0.5,
        slice_column="",
        primary_metric="roc_auc",
        max_regression=0.01,
        invariance_tolerance=0.02,
    )


@pytest.mark.slow  # starts a LocalCluster
def test_dask_and_local_training_give_the_same_model_and_pass_the_same_gate(
    tmp_path: Path,
) -> None:
    data = generate_churn(16000, seed=3).reset_index(drop=True)
    holdout = generate_churn(6000, seed=4).reset_index(drop=True)
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(4):
        data.iloc[i * 4000 : (i + 1) * 4000].to_parquet(folder / f"part-{i}.parquet")
    schema_path = tmp_path / "schema.json"
    CHURN_SCHEMA.save(str(schema_path))
    params = TrainParams("xgboost", n_estimators=120, seed=0)
    out = {k: str(tmp_path / f"{k}.json") for k in ("reference", "summary")}
    summary = train_dask_step(
        data_uri=str(folder),
        schema_path=str(schema_path),
        model_path=str(tmp_path / "model.skops"),
        reference_path=out["reference"],
        summary_path=out["summary"],
        params=params,
        holdout_fraction=0.2,
        threshold=0.5,
        spec=SPEC,
    )
    assert summary == json.loads(Path(out["summary"]).read_text())
    assert summary["data_rows"] == 16000
    assert summary["train_rows"] + summary["holdout_rows"] == 16000

    # The registered artifact is the local kind: the server's loader takes it unchanged.
    reg = ModelRegistry(str(tmp_path / "registry"))
    reference = ReferenceProfile.from_dict(json.loads(Path(out["reference"]).read_text()))
    mv = reg.register(
        "churn", str(tmp_path / "model.skops"), schema=CHURN_SCHEMA, reference=reference
    )
    dask_model = reg.load_model("churn", mv.version)
    assert isinstance(dask_model, Pipeline) and isinstance(dask_model[-1], XGBClassifier)

    local_model = train_model(data, CHURN_SCHEMA, params).pipeline
    dask_eval, local_eval = _evaluate(dask_model, holdout), _evaluate(local_model, holdout)
    auc_dask, auc_local = dask_eval.metrics["roc_auc"], local_eval.metrics["roc_auc"]
    assert abs(auc_dask - auc_local) < 0.005, (auc_dask, auc_local)
    assert abs(summary["holdout_metrics"]["roc_auc"] - auc_local) < 0.02  # its own holdout
    for evaluation in (dask_eval, local_eval):
        assert decide(evaluation, primary_metric="roc_auc", margin=0.005).promote

    # The drift reference: the local statistics from per-partition counts.
    local_ref = profile_reference(data, CHURN_SCHEMA)
    for f in CHURN_SCHEMA.categorical_features:
        mine, theirs = reference.feature(f.name), local_ref.feature(f.name)
        assert mine.categories == theirs.categories
        assert mine.proportions == pytest.approx(theirs.proportions, abs=0.02)
    assert reference.prediction is not None and reference.prediction.count == summary["train_rows"]


def test_another_estimator_on_dask_is_refused_in_one_line() -> None:
    with pytest.raises(ComputeError, match="compute=dask trains xgboost only") as e:
        check_dask_estimator("ridge")
    assert "\n" not in str(e.value)


def test_a_bad_compute_choice_is_refused_when_made() -> None:
    with pytest.raises(ComputeError, match="compute must be one of local, dask"):
        ComputeSpec(compute="spark")
    with pytest.raises(ComputeError, match="dask_worker_memory"):
        ComputeSpec(compute="dask", worker_memory="lots")


@pytest.mark.slow  # starts a LocalCluster
def test_the_local_cluster_is_closed_when_the_step_fails() -> None:
    address = ""
    with pytest.raises(RuntimeError, match="the step failed"), dask_client(SPEC) as client:
        address = client.scheduler.address
        assert len(client.scheduler_info()["workers"]) == 2
        raise RuntimeError("the step failed")
    url = urlparse(address.replace("tcp://", "http://"))
    with pytest.raises(OSError):  # nothing listens there any more
        socket.create_connection((url.hostname, url.port), timeout=2).close()


@pytest.mark.slow  # starts a LocalCluster
def test_seeded_training_on_dask_is_reproducible(tmp_path: Path) -> None:
    import numpy as np

    from components.train import predict_output
    from components.train_dask import read_dataset, train_on_dask

    data = generate_churn(6000, seed=5).reset_index(drop=True)
    for i in range(3):
        data.iloc[i * 2000 : (i + 1) * 2000].to_parquet(tmp_path / f"part-{i}.parquet")
    probe = generate_churn(1000, seed=6)
    params = TrainParams("xgboost", n_estimators=40, seed=1)
    outputs = []
    for _ in range(2):  # two clusters: partitions may land on other workers
        with dask_client(SPEC) as client:
            model = train_on_dask(client, read_dataset(str(tmp_path)), CHURN_SCHEMA, params)
        outputs.append(predict_output(model.pipeline, probe, CHURN_SCHEMA))
    np.testing.assert_array_equal(outputs[0], outputs[1])
