"""The skops allow-list: every estimator the platform trains loads; an artifact that would run
code (exec, eval, __import__, os.system, subprocess) is refused before anything in it is built."""

from __future__ import annotations

import builtins
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from components.ingest import settle_target
from components.train import TrainParams, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.estimators import ESTIMATORS_BY_TASK
from mlops_core.model_artifact import TRUSTED_TYPES, IntegrityError, load_artifact
from mlops_core.schema import infer_schema
from tests.tasks.datasets import bundled_frame


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS_BY_TASK["binary"]))
def test_every_estimator_the_platform_trains_loads(tmp_path: Path, estimator: str) -> None:
    df = generate_churn(500, seed=2)
    pipeline = train_model(df, CHURN_SCHEMA, TrainParams(estimator, n_estimators=10)).pipeline
    path = tmp_path / "model.skops"
    save_model(pipeline, str(path))
    assert isinstance(load_artifact(str(path)), Pipeline)


@pytest.mark.parametrize(
    ("dataset", "estimator"),
    [
        (d, e)
        for d, t in [("iris", "multiclass"), ("diabetes", "regression")]
        for e in ESTIMATORS_BY_TASK[t]
    ],
)
def test_every_task_the_platform_trains_loads(tmp_path: Path, estimator: str, dataset: str) -> None:
    df, task, target = bundled_frame(dataset)
    spec = settle_target(df[target], task=task, positive_class=None, target=target)
    schema = replace(
        infer_schema(df, target, max_categories=50), task=spec.task, classes=spec.classes
    )
    pipeline = train_model(df, schema, TrainParams(estimator, n_estimators=10)).pipeline
    path = tmp_path / "model.skops"
    save_model(pipeline, str(path))
    assert isinstance(load_artifact(str(path)), Pipeline)


def test_no_module_is_trusted_wholesale() -> None:
    assert all(t.count(".") >= 1 and not t.endswith(".") for t in TRUSTED_TYPES)
    assert not any(
        t.startswith(("builtins.", "posix.", "os.", "subprocess.")) for t in TRUSTED_TYPES
    )
    assert "numpy.vectorize" not in TRUSTED_TYPES


def _hostile(tmp_path: Path, func: object) -> Path:
    """A Pipeline whose first step applies `func` to every input value (the probe's attack)."""
    pipeline = Pipeline([("pre", FunctionTransformer(np.vectorize(func)))])
    path = tmp_path / "hostile.skops"
    sio.dump(pipeline, str(path))
    return path


def test_the_probe_attack_is_live_when_trusted(tmp_path: Path) -> None:
    # Shows the artifact below is a real attack: trusted wholesale (the old prefix rule), calling
    # the model on a string runs it.
    marker = tmp_path / "pwned"
    path = _hostile(tmp_path, builtins.exec)
    blob = path.read_bytes()
    model = sio.loads(blob, trusted=sio.get_untrusted_types(data=blob))
    model.transform(np.array([f"open({str(marker)!r}, 'w').close()"], dtype=object))
    assert marker.exists()


@pytest.mark.parametrize(
    "func",
    [builtins.exec, builtins.eval, builtins.__import__, os.system, subprocess.check_output,
     subprocess.Popen],
    ids=["exec", "eval", "__import__", "os.system", "subprocess.check_output", "subprocess.Popen"],
)  # fmt: skip
def test_code_running_artifacts_are_refused_before_anything_is_built(
    tmp_path: Path, func: object
) -> None:
    path = _hostile(tmp_path, func)
    with pytest.raises(IntegrityError, match="outside the allow-list") as info:
        load_artifact(str(path))  # refused from the file's type list: no object is built
    assert "numpy.vectorize" in str(info.value)
    assert getattr(func, "__name__", "") in str(info.value)


def test_a_file_that_is_not_skops_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(IntegrityError, match="not a readable skops file"):
        load_artifact(str(path))
