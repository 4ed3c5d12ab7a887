"""`mlops pipeline compile|run` and `mlops registry ...` as a user runs them: the real CLI process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.train import TrainParams, save_model, train_model
from mlops_core.cars_data import generate_cars
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry
from pipelines.params import TrainingParams
from tests.apiserver.kfp_api_standin import CREATE_RUN, kfp_api_standin

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


def _cars_csv(tmp_path: Path) -> Path:
    r = mlops("data", "sample", "cars", "--output", "cars.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote 398 rows of cars to cars.csv (target column: mpg)" in r.stdout
    return tmp_path / "cars.csv"


def test_a_public_style_csv_trains_with_its_identifiers_set_aside(tmp_path: Path) -> None:
    # The probe: Auto's `name` stopped the run ("301 distinct values (limit 50)") with no flag
    # to drop it or raise the limit.
    _cars_csv(tmp_path)
    r = mlops(
        "pipeline", "run", "--local", "--data-source", "cars.csv", "--target", "mpg",
        "--model", "cars", "--drop", "liters_per_100km", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "cars v1: promoted to champion" in out
    assert "set aside │ car_id: an identifier: a different integer on each of its 398" in out
    assert "set aside │ name: an identifier:" in out
    assert "set aside │ liters_per_100km: dropped: --drop" in out
    assert "leakage" not in out
    schema = ModelRegistry(str(tmp_path / ".mlops/registry")).schema("cars")
    assert not {"car_id", "name", "liters_per_100km"} & set(schema.feature_names)


def test_leakage_warns_and_with_fail_on_leakage_fails_at_validation(tmp_path: Path) -> None:
    # The probe: Smarket with `Today` kept reached AUC 1.0 and was promoted with no warning.
    _cars_csv(tmp_path)
    args = ["pipeline", "run", "--local", "--data-source", "cars.csv", "--target", "mpg"]
    warned = mlops(*args, "--model", "cars", cwd=tmp_path)
    assert warned.returncode == 0, warned.stdout + warned.stderr
    out = " ".join(warned.stdout.split())
    assert "warning │ possible target leakage in ['liters_per_100km']" in out
    assert "(--fail-on-leakage fails the run)" in out
    registry = ModelRegistry(str(tmp_path / ".mlops/registry"))
    assert registry.champion("cars") == 1

    failed = mlops(*args, "--model", "cars", "--fail-on-leakage", cwd=tmp_path)
    assert failed.returncode == 2
    assert len(failed.stderr.strip().splitlines()) == 1, failed.stderr
    assert failed.stderr.startswith(
        "error: data validation failed for columns ['liters_per_100km']: liters_per_100km: "
        "target leakage (liters_per_100km alone reaches r2 "
    )
    report = Path(failed.stderr.rsplit("report: ", 1)[1].strip())
    assert "| `liters_per_100km` | r2 |" in report.read_text()
    assert registry.champion("cars") == 1 and len(registry.versions("cars")) == 1


def test_an_estimator_unfit_for_the_task_is_refused_before_any_work(tmp_path: Path) -> None:
    # The probe: --estimator ridge was refused only after ingest and validate ran (13 s).
    data = tmp_path / "cars.csv"
    generate_cars().to_csv(data, index=False)
    start = time.perf_counter()
    mlops("pipeline", "run", "--help", cwd=tmp_path)
    startup = time.perf_counter() - start  # the interpreter and the CLI's imports
    start = time.perf_counter()
    r = mlops(
        "pipeline", "run", "--local", "--data-source", str(data), "--target", "mpg",
        "--task", "regression", "--estimator", "logistic_regression", cwd=tmp_path,
    )  # fmt: skip
    refused = time.perf_counter() - start
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: estimator 'logistic_regression' does not fit a regression task; choose one of "
        "['xgboost', 'hist_gradient_boosting', 'ridge', 'linear_regression']"
    )
    assert not (tmp_path / ".mlops").exists()  # no run folder: nothing started
    assert refused - startup < 1.0, (refused, startup)


def test_submit_sends_a_users_data_and_every_parameter_to_the_kfp_api(tmp_path: Path) -> None:
    # The probe: `mlops pipeline submit --data-source ...` answered "No such option".
    with kfp_api_standin() as kfp:
        r = mlops(
            "pipeline", "submit", "--image", "mlops-platform/components:t",
            "--serving-image", "mlops-platform/serving:t", "--host", kfp.url,
            "--data-source", "s3://mlpipeline/data/cars.csv", "--target", "mpg",
            "--model", "cars", "--drop", "name", "--drop", "car_id", "--max-categories", "80",
            "--holdout-fraction", "0.25", "--estimator", "ridge", "--fail-on-leakage",
            cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        assert kfp.unknown == []
        (run,) = [q.body for q in kfp.requests if (q.method, q.path) == CREATE_RUN]
    sent = run["runtime_config"]["parameters"]
    expected = TrainingParams(
        data_source="s3://mlpipeline/data/cars.csv",
        target="mpg",
        drop_columns="name,car_id",
        max_categories=80,
        holdout_fraction=0.25,
        estimator="ridge",
        fail_on_leakage=True,
    ).arguments()
    assert {k: sent[k] for k in expected} == expected
    assert sent["model_name"] == "cars" and sent["deploy"] is True
    assert sent["serving_image"] == "mlops-platform/serving:t"
    assert f"submitted run {kfp.runs[0]['run_id']}" in r.stdout
    assert "mlops-platform/components:t" in json.dumps(run["pipeline_spec"])


def test_submit_refuses_a_path_on_this_machine_before_any_request(tmp_path: Path) -> None:
    data = tmp_path / "cars.csv"
    generate_cars().to_csv(data, index=False)
    with kfp_api_standin() as kfp:
        r = mlops(
            "pipeline", "submit", "--image", "c:t", "--serving-image", "s:t", "--host", kfp.url,
            "--data-source", str(data), "--target", "mpg", cwd=tmp_path,
        )  # fmt: skip
        assert kfp.requests == []
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: data_source '{data}' is a path on this machine, which the cluster cannot read; "
        "copy it to the object store and pass its URL (e.g. s3://mlpipeline/data/...)"
    )


def test_compile_into_a_folder_that_does_not_exist_makes_it(tmp_path: Path) -> None:
    # Issue 24, item 10: `-o missing/dir/x.yaml` printed a 49-line traceback.
    r = mlops("pipeline", "compile", "-o", "missing/dir/x.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "missing" / "dir" / "x.yaml").read_text().startswith("# PIPELINE DEFINITION")


def test_compile_to_a_path_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    r = mlops("pipeline", "compile", "-o", "a-file/x.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("error: cannot write a-file/x.yaml")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_run_is_named_after_its_model(tmp_path: Path) -> None:
    # Issue 24, item 11: every run was named churn-training-*, whatever the model.
    registry = tmp_path / "registry"
    args = ["pipeline", "run", "--local", "--rows", "1000", "--registry", str(registry)]
    r = mlops(*args, "--model", "telco", "--work-dir", str(tmp_path / "work"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = ModelRegistry(str(registry)).get("telco", 1).run_id
    assert run_id.startswith("telco-training-"), run_id
