"""The compute options of `mlops pipeline run` and `mlops batch score`: generated from
pipelines/params.py ComputeParams, and a bad choice is one line before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from xgboost import XGBClassifier

from mlops_core.registry import ModelRegistry
from pipelines.params import ComputeParams, TrainingParams, default

MLOPS = str(Path(sys.executable).with_name("mlops"))
ROOT = Path(__file__).resolve().parents[2]


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_dask_with_another_estimator_is_one_line_before_any_run(tmp_path: Path) -> None:
    r = mlops(
        "pipeline", "run", "--local", "--compute", "dask", "--estimator", "ridge", cwd=tmp_path
    )
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: compute=dask trains xgboost only, not 'ridge': use compute=local for it, or "
        "estimator=xgboost"
    ]
    assert not (tmp_path / ".mlops").exists()  # no run started


def test_batch_refuses_an_unknown_compute_before_reading_anything(tmp_path: Path) -> None:
    r = mlops(
        "batch",
        "score",
        "--input",
        "absent.parquet",
        "--output",
        "o.parquet",
        "--compute",
        "spark",
        cwd=tmp_path,
    )
    assert r.returncode != 0
    assert "compute must be one of local, dask, got 'spark'" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_golden_pipelines_take_the_compute_parameters() -> None:
    for name in ("training.yaml", "batch_scoring.yaml"):
        doc = next(yaml.safe_load_all((ROOT / "pipelines" / name).read_text()))  # the IR
        inputs = doc["root"]["inputDefinitions"]["parameters"]
        for param in ("compute", "dask_workers", "dask_worker_memory", "dask_worker_cpu"):
            assert inputs[param]["defaultValue"] == default(ComputeParams, param), (name, param)
        text = (ROOT / "pipelines" / name).read_text()
        # the workers' image and object store (components/dask_kubecluster.py)
        assert "MLOPS_DASK_IMAGE" in text and "MLOPS_DASK_STORE_SECRET" in text, name


def test_training_params_carry_the_compute_choice() -> None:
    spec = TrainingParams(
        compute="dask", dask_workers=3, dask_worker_memory="512MiB"
    ).compute_spec()
    assert (spec.is_dask, spec.workers, spec.memory_bytes()) == (True, 3, 512 * 2**20)
    assert TrainingParams().compute_spec().is_dask is False  # local stays the default


@pytest.mark.slow
def test_a_local_pipeline_run_trains_on_dask_and_registers(tmp_path: Path) -> None:
    r = mlops("pipeline", "run", "--local", "--compute", "dask", "--rows", "5000", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (summary,) = (tmp_path / ".mlops" / "runs").glob("*/*/train/summary")
    doc = json.loads(summary.read_text())
    assert doc["compute"]["compute"] == "dask" and doc["compute"]["workers"] == 2
    reg = ModelRegistry(str(tmp_path / ".mlops" / "registry"))
    assert reg.champion("churn") == 1
    assert isinstance(reg.load_model("churn", 1)[-1], XGBClassifier)
