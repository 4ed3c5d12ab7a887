"""`mlops monitor check` on real files against a real registry; its errors are one red line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry
from tests.serving.harness import RegisteredModels

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing

MLOPS = str(Path(sys.executable).with_name("mlops"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"COLUMNS": "200"}  # rich wraps tables to the terminal width
    return subprocess.run(
        [MLOPS, "monitor", "check", *args], capture_output=True, text=True, env=env
    )


def test_check_reports_the_drifted_feature(registered: RegisteredModels, tmp_path: Path) -> None:
    path = tmp_path / "recent.parquet"
    generate_churn(2000, scenario="new_category", seed=3).to_parquet(path)
    out = run(str(path), "--registry", registered.registry_uri)
    assert out.returncode == 0, out.stderr
    lines = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if "│" in line}
    assert "yes" in lines["payment_method"] and "yes" not in lines["contract"]
    assert "1/11 features drifted" in out.stdout


def test_check_refuses_a_missing_file_and_a_wrong_format(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    missing = run(str(tmp_path / "nope.csv"), "--registry", registered.registry_uri)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    odd = tmp_path / "data.txt"
    odd.write_text("x")
    wrong = run(str(odd), "--registry", registered.registry_uri)
    assert wrong.returncode == 2 and "expected a .csv or .parquet file" in wrong.stderr


def test_check_of_scores_reads_the_model_and_version_from_the_rows(tmp_path: Path) -> None:
    # Issue 24, item 6: a scored batch was compared with model `churn` although every row names
    # its model (and version).
    reg = ModelRegistry(str(tmp_path / "reg"))
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"not loaded by this command")
    reference = profile_reference(generate_churn(2000, seed=1), CHURN_SCHEMA)
    for v in (1, 2):
        reg.register("telco", str(artifact), schema=CHURN_SCHEMA, reference=reference)
        reg.set_champion("telco", v, reason=f"v{v}")
    scores = generate_churn(2000, scenario="new_category", seed=3).drop(columns="churned")
    scores = scores.assign(probability=0.3, label=0, model_name="telco", model_version="1")
    path = tmp_path / "scores.parquet"
    scores.to_parquet(path)
    out = run(str(path), "--registry", str(tmp_path / "reg"))
    assert out.returncode == 0, out.stderr
    assert "2000 rows vs telco v1's training data" in " ".join(out.stdout.split())
    mixed = scores.assign(model_name=["telco", "other"] * 1000)
    mixed.to_parquet(path)
    out = run(str(path), "--registry", str(tmp_path / "reg"))
    assert out.returncode == 2 and "pass --name" not in out.stderr
    assert "the rows name 2 values of model_name (other, telco); pass --model" in out.stderr
