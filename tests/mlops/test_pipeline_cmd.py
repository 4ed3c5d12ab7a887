"""`mlops pipeline compile|run` and `mlops registry ...` as a user runs them: the real CLI process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.train import TrainParams, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


def test_compile_with_an_image(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    r = mlops(
        "pipeline", "compile", "--image", "example/components:7", "-o", str(out), cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "image: example/components:7" in out.read_text()


def test_run_without_local_is_a_clear_error(tmp_path: Path) -> None:
    r = mlops("pipeline", "run", cwd=tmp_path)
    assert r.returncode == 2
    assert "pass --local" in r.stderr
    assert "Traceback" not in r.stderr


def test_local_run_prints_the_decision(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    args = ["pipeline", "run", "--local", "--rows", "1000", "--registry", str(registry)]
    r = mlops(*args, "--work-dir", str(tmp_path / "work"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "churn v1: promoted to champion" in out
    assert "no champion yet" in out
    assert ModelRegistry(str(registry)).champion("churn") == 1


def test_a_failed_step_prints_its_own_reason_on_one_line(tmp_path: Path) -> None:
    # The probe: ingest failures printed only "step ingest failed ... (task logs: ...)" with raw
    # ANSI codes; the reason sat in a traceback in tasks.log.
    data = tmp_path / "header-only.csv"
    data.write_text("a,b\n")
    r = mlops(
        "pipeline", "run", "--local", "--data-source", str(data), "--registry",
        str(tmp_path / "registry"), "--work-dir", str(tmp_path / "work"), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "step ingest failed: IngestError: target column 'churned' is not in" in r.stderr
    assert "\x1b[" not in r.stderr and "Traceback" not in r.stderr


def test_broken_data_run_exits_with_the_failing_columns(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    r = mlops(
        "pipeline",
        "run",
        "--local",
        "--scenario",
        "broken",
        "--rows",
        "1000",
        "--registry",
        str(registry),
        "--work-dir",
        str(tmp_path / "work"),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert (
        "error: data validation failed for columns ['tenure_months', 'monthly_charges', 'age']"
        in (" ".join(r.stderr.split()))
    )
    assert "Traceback" not in r.stderr
    assert ModelRegistry(str(registry)).versions("churn") == []


@pytest.fixture
def registry_with_two_versions(tmp_path: Path) -> Path:
    df = generate_churn(600, seed=8)
    model = tmp_path / "m.skops"
    save_model(
        train_model(df, CHURN_SCHEMA, TrainParams("logistic_regression")).pipeline, str(model)
    )
    reg = ModelRegistry(str(tmp_path / "registry"))
    for auc in (0.8, 0.81):
        reg.register(
            "churn",
            str(model),
            schema=CHURN_SCHEMA,
            reference=profile_reference(df, CHURN_SCHEMA),
            metrics={"roc_auc": auc},
            run_id=f"run-{auc}",
        )
    return tmp_path / "registry"


def test_registry_commands(registry_with_two_versions: Path, tmp_path: Path) -> None:
    reg = str(registry_with_two_versions)
    assert mlops("registry", "promote", "1", "--registry", reg, cwd=tmp_path).returncode == 0
    assert mlops("registry", "promote", "2", "--registry", reg, cwd=tmp_path).returncode == 0
    listing = mlops("registry", "list", "--registry", reg, cwd=tmp_path)
    assert "0.8100" in listing.stdout and "run-0.81" in listing.stdout
    show = mlops("registry", "show", "--registry", reg, cwd=tmp_path)
    doc = json.loads(show.stdout)
    assert doc["version"] == 2 and doc["is_champion"]
    back = mlops("registry", "rollback", "--registry", reg, cwd=tmp_path)
    assert back.returncode == 0 and "v1 is champion" in back.stdout
    assert ModelRegistry(reg).champion("churn") == 1
    missing = mlops("registry", "show", "9", "--registry", reg, cwd=tmp_path)
    assert missing.returncode == 2 and "has no version 9" in missing.stderr


@pytest.mark.parametrize(
    ("name", "task"), [("breast_cancer", "binary"), ("diabetes", "regression")]
)
def test_a_users_csv_trains_with_no_flag_but_data_source_and_target(
    tmp_path: Path, name: str, task: str
) -> None:
    from tests.tasks.datasets import write_bundled_csv

    csv, _, target = write_bundled_csv(name, tmp_path)
    registry = tmp_path / "registry"
    args = ["pipeline", "run", "--local", "--data-source", str(csv), "--target", target]
    r = mlops(*args, "--registry", str(registry), "--model", name, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert f"{name} v1: promoted to champion" in out
    assert f"task │ {task}:" in out  # the decision table's task row says which, and why
    assert ModelRegistry(str(registry)).get(name).params["task"] == task
