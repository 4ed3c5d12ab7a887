"""The training pipeline: golden YAML up to date, image as a compile-time argument, and full
kfp.local runs (SubprocessRunner) on small data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mlops_core.registry import ModelRegistry
from pipelines.local_run import TrainingParams, ValidationFailed, run_training_locally
from pipelines.training import GOLDEN_YAML, compile_pipeline


def _pipeline_spec(path: Path) -> dict:
    """The IR's first document (a second one, the platform spec, follows in the cluster form)."""
    return next(yaml.safe_load_all(path.read_text()))


def _images(path: Path) -> set[str]:
    doc = _pipeline_spec(path)
    return {e["container"]["image"] for e in doc["deploymentSpec"]["executors"].values()}


def test_committed_yaml_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "training.yaml")
    assert fresh.read_text() == GOLDEN_YAML.read_text(), (
        "pipelines/training.yaml is stale: run `make compile` and commit it"
    )


def test_image_is_a_compile_time_argument(tmp_path: Path) -> None:
    path = compile_pipeline(tmp_path / "p.yaml", image="registry.local/components:abc")
    assert _images(path) == {"registry.local/components:abc"}
    doc = _pipeline_spec(path)
    tasks = doc["root"]["dag"]["tasks"]
    assert {"ingest", "validate", "train", "evaluate", "gate", "register"} <= set(tasks)
    # Training waits for the verdict step, which reads the validate step's summary and report.
    assert tasks["train"]["dependentTasks"] == ["ingest", "require-valid-data"]
    assert tasks["require-valid-data"]["dependentTasks"] == ["validate"]
    assert "registry_uri" in doc["root"]["inputDefinitions"]["parameters"]
    # install_kfp_package=False: the component image brings KFP; nothing is pip-installed.
    for executor in doc["deploymentSpec"]["executors"].values():
        assert "pip install" not in " ".join(executor["container"]["command"])


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-run")


@pytest.mark.slow
def test_local_run_trains_evaluates_and_registers_the_first_champion(registry_dir: Path) -> None:
    result = run_training_locally(
        TrainingParams(rows=1500, seed=3),
        registry_uri=str(registry_dir / "registry"),
        model_name="churn",
        work_dir=registry_dir,
    )
    assert result["promoted"] and result["version"] == 1 and result["champion"] == 1
    # No champion yet: the differential test has nothing to compare and says so.
    assert result["tests"] == {
        "differential": "skipped",
        "extreme_inputs": "passed",
        "invariance": "passed",
    }
    assert result["task"] == "binary" and result["classes"] == [0, 1]
    assert result["run_id"].startswith("churn-training-")
    assert result["validation"]["passed"] is True
    assert "Status: PASSED" in Path(result["validation"]["report"]).read_text()
    mv = ModelRegistry(str(registry_dir / "registry")).get("churn")
    assert mv.run_id == result["run_id"] and mv.data_fingerprint == result["data_fingerprint"]
    assert 0.7 < mv.metrics["roc_auc"] < 1.0
    # The KFP UI's metrics: Metrics and ClassificationMetrics in the evaluate task's output.
    (out,) = Path(result["run_dir"]).glob("*/evaluate/executor_output.json")
    artifacts = json.loads(out.read_text())["artifacts"]
    logged = artifacts["metrics"]["artifacts"][0]["metadata"]
    assert logged["roc_auc"] == pytest.approx(mv.metrics["roc_auc"], abs=1e-6)
    classification = artifacts["classification"]["artifacts"][0]["metadata"]
    assert {"confidenceMetrics", "confusionMatrix"} <= set(classification)
    # The slice metrics the evaluate task logged are kept with the version in the registry.
    slices = ModelRegistry(str(registry_dir / "registry")).slices("churn", 1)
    assert slices is not None and slices.column == "contract" and len(slices.metrics) == 3
    for category, metrics in slices.metrics.items():
        assert logged[f"contract={category}/roc_auc"] == pytest.approx(metrics["roc_auc"], abs=1e-6)


@pytest.mark.slow
def test_broken_data_fails_validation_naming_columns_and_registers_nothing(
    registry_dir: Path,
) -> None:
    registry = ModelRegistry(str(registry_dir / "registry"))
    before, champion = registry.versions("churn"), registry.champion("churn")
    with pytest.raises(ValidationFailed) as e:
        run_training_locally(
            TrainingParams(rows=1500, scenario="broken"),
            registry_uri=str(registry_dir / "registry"),
            model_name="churn",
            work_dir=registry_dir,
        )
    assert e.value.failing_columns == ["tenure_months", "monthly_charges", "age"]
    assert "values are not numbers" in str(e.value)
    assert e.value.report_path is not None
    assert "| `age` | range |" in e.value.report_path.read_text()
    assert registry.versions("churn") == before
    assert registry.champion("churn") == champion


@pytest.mark.slow
def test_user_csv_with_an_inferred_schema_runs_end_to_end(tmp_path: Path) -> None:
    from mlops_core.churn_data import generate_churn
    from mlops_core.schema import FeatureSchema

    data = tmp_path / "mine"
    data.mkdir()
    df = (
        generate_churn(1500, seed=12).drop(columns=["contract"]).rename(columns={"churned": "left"})
    )
    df.to_csv(data / "customers.csv", index=False)
    result = run_training_locally(
        TrainingParams(data_source=str(data / "customers.csv"), target="left"),
        registry_uri=str(tmp_path / "registry"),
        model_name="customers",
        work_dir=tmp_path,
    )
    assert result["promoted"] and result["version"] == 1
    registry = ModelRegistry(str(tmp_path / "registry"))
    schema = registry.schema("customers")
    assert schema.target == "left" and "contract" not in schema.feature_names
    assert registry.get("customers").data_source == str(data / "customers.csv")
    # the inferred schema is kept as the run's artifact, ready to edit and pass back
    (saved,) = Path(result["run_dir"]).glob("*/ingest/schema")
    assert FeatureSchema.load(str(saved)) == schema
