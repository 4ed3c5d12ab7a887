"""Any tabular data set a user brings: binary with Yes/No labels, multiclass, regression, on
scikit-learn's bundled data sets written to CSV, from the target's task to a served model that
answers in the data's own labels over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from components.evaluate import evaluate_model
from components.gate import decide
from components.ingest import ingest
from components.train import TrainParams, train_model
from mlops_core.schema import FeatureSchema
from mlops_core.target import TargetError, settle_target
from pipelines.params import TrainingParams
from tests.serving.harness import RunningServer, start_server, stop_server
from tests.tasks.datasets import BUNDLED, bundled_frame, write_bundled_csv
from tests.tasks.steps import run_steps

# --- the task and the labels -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task", "classes"),
    [
        ("breast_cancer", "binary", ("No", "Yes")),
        ("iris", "multiclass", ("setosa", "versicolor", "virginica")),
        ("wine", "multiclass", ("class_0", "class_1", "class_2")),
        ("diabetes", "regression", ()),
    ],
)
def test_auto_decides_the_task_and_says_why(name: str, task: str, classes: tuple) -> None:
    df, _, target = bundled_frame(name)
    spec = settle_target(df[target], target=target)
    assert (spec.task, spec.classes) == (task, classes)
    assert spec.reason.startswith(task)


def test_binary_positive_class_is_chosen_deterministically_or_by_the_user() -> None:
    assert settle_target(pd.Series(["No", "Yes", "No"])).classes == ("No", "Yes")
    assert settle_target(pd.Series([True, False])).classes == (False, True)
    assert settle_target(pd.Series(["b", "a", "b"])).classes == ("a", "b")  # last in sorted order
    chosen = settle_target(pd.Series(["No", "Yes"]), positive_class="No")
    assert chosen.classes == ("Yes", "No") and "--positive-class" in chosen.reason
    with pytest.raises(TargetError, match="'maybe' is not a value"):
        settle_target(pd.Series(["No", "Yes"]), positive_class="maybe")


def test_four_integer_classes_are_multiclass_and_a_float_target_is_regression() -> None:
    assert settle_target(pd.Series([0, 1, 2, 3] * 5)).task == "multiclass"
    assert settle_target(pd.Series(np.linspace(0, 1, 50))).task == "regression"


@pytest.mark.parametrize(
    ("values", "task", "message"),
    [
        (["a", "a", "a"], "auto", "single value"),
        (["a", "a"], "binary", "single class"),
        ([0.5, 1.5, 2.25], "binary", "non-integer numbers"),
        (["a", "b", "c"], "binary", "exactly 2 classes"),
        (["a", "b"], "regression", "not numeric"),
    ],
)
def test_a_target_that_does_not_fit_the_task_fails_with_one_line(
    values: list, task: str, message: str
) -> None:
    with pytest.raises(TargetError, match=message) as e:
        settle_target(pd.Series(values), task=task, target="y")
    assert "\n" not in str(e.value)


def test_missing_targets_are_dropped_and_counted(tmp_path: Path) -> None:
    df, _, target = bundled_frame("iris")
    df.loc[[3, 60, 120], target] = None
    df.to_csv(tmp_path / "iris.csv", index=False)
    out = {k: str(tmp_path / k) for k in ("train_path", "holdout_path", "schema_path")}
    summary = ingest(
        **TrainingParams().for_step(
            ingest, data_source=str(tmp_path / "iris.csv"), target=target, **out
        )
    )
    assert summary.target_missing_dropped == 3 and summary.rows == 147
    assert summary.task == "multiclass"
    assert FeatureSchema.load(out["schema_path"]).classes == ("setosa", "versicolor", "virginica")


def test_a_class_the_model_never_saw_fails_evaluation_naming_it(tmp_path: Path) -> None:
    df, _, target = bundled_frame("iris")
    schema = FeatureSchema(
        features=FeatureSchema.load(_ingested_schema(tmp_path, "iris")).features,
        target=target,
        task="multiclass",
        classes=("setosa", "versicolor", "virginica"),
    )
    model = train_model(df, schema, TrainParams("logistic_regression")).pipeline
    holdout = df.head(10).assign(**{target: ["setosa"] * 9 + ["unknown-flower"]})
    with pytest.raises(TargetError, match="unknown-flower"):
        evaluate_model(model, holdout, schema, **TrainingParams().for_step(evaluate_model))


def _ingested_schema(tmp_path: Path, name: str) -> str:
    csv, _, target = write_bundled_csv(name, tmp_path)
    out = {k: str(tmp_path / f"{name}-{k}") for k in ("train_path", "holdout_path", "schema_path")}
    ingest(**TrainingParams().for_step(ingest, data_source=str(csv), target=target, **out))
    return out["schema_path"]


@pytest.mark.parametrize("name", list(BUNDLED))
def test_metrics_and_gate_per_task_with_skipped_tests_never_passed(
    tmp_path: Path, name: str
) -> None:
    schema = FeatureSchema.load(_ingested_schema(tmp_path, name))
    train = pd.read_parquet(tmp_path / f"{name}-train_path")
    holdout = pd.read_parquet(tmp_path / f"{name}-holdout_path")
    model = train_model(train, schema, TrainParams("hist_gradient_boosting")).pipeline
    ev = evaluate_model(model, holdout, schema, **TrainingParams().for_step(evaluate_model))
    expected = {
        "binary": {"roc_auc", "log_loss", "accuracy"},
        "multiclass": {
            "accuracy",
            "macro_f1",
            "log_loss",
            *(f"recall/{c}" for c in schema.classes),
        },
        "regression": {"rmse", "mae", "r2", "residual_p50"},
    }[schema.task]
    assert expected <= set(ev.metrics)
    if schema.is_classifier:
        assert np.array(ev.confusion_matrix).sum() == len(holdout)
    decision = decide(ev, **TrainingParams().for_step(decide))
    assert decision.primary_metric == {"binary": "roc_auc", "multiclass": "macro_f1"}.get(
        schema.task, "rmse"
    )
    # Nothing invariant in a user's data, no champion yet: both tests say skipped, not passed.
    assert "test invariance passed" not in decision.reasons
    assert any(r.startswith("test invariance skipped") for r in decision.reasons)
    assert any(r.startswith("test differential skipped") for r in decision.reasons)
    assert decision.promote


@pytest.mark.parametrize("name", ["iris", "diabetes"])
def test_kfp_metrics_per_task(tmp_path: Path, name: str) -> None:
    from kfp.dsl import ClassificationMetrics, Metrics

    from components.evaluate import log_evaluation

    schema = FeatureSchema.load(_ingested_schema(tmp_path, name))
    train = pd.read_parquet(tmp_path / f"{name}-train_path")
    holdout = pd.read_parquet(tmp_path / f"{name}-holdout_path")
    linear = "ridge" if schema.task == "regression" else "logistic_regression"
    model = train_model(train, schema, TrainParams(linear)).pipeline
    ev = evaluate_model(model, holdout, schema, **TrainingParams().for_step(evaluate_model))
    metrics, classification = Metrics(), ClassificationMetrics()
    log_evaluation(ev, metrics, classification)
    assert "test/invariance" not in metrics.metadata  # skipped: no value, neither 1 nor 0
    if schema.task == "multiclass":
        matrix = classification.metadata["confusionMatrix"]
        assert [c["displayName"] for c in matrix["annotationSpecs"]] == list(schema.classes)
        assert metrics.metadata["macro_f1"] == pytest.approx(ev.metrics["macro_f1"], abs=1e-6)
    else:
        assert classification.metadata == {}
        assert metrics.metadata["rmse"] == pytest.approx(ev.metrics["rmse"], abs=1e-6)


def test_the_gate_knows_lower_is_better_for_regression_errors(tmp_path: Path) -> None:
    schema = FeatureSchema.load(_ingested_schema(tmp_path, "diabetes"))
    train = pd.read_parquet(tmp_path / "diabetes-train_path")
    holdout = pd.read_parquet(tmp_path / "diabetes-holdout_path")
    good = train_model(train, schema, TrainParams("ridge")).pipeline
    weak = train_model(train.head(40), schema, TrainParams("ridge")).pipeline
    ev = evaluate_model(
        good,
        holdout,
        schema,
        **TrainingParams().for_step(evaluate_model, champion=weak, champion_version=1),
    )
    assert ev.metrics["rmse"] < ev.champion_metrics["rmse"]
    d = decide(ev, **TrainingParams().for_step(decide))
    assert d.improvement > 0 and d.promote
    with pytest.raises(ValueError, match="does not apply to a regression model"):
        decide(ev, primary_metric="roc_auc", margin=0.0)


# --- train -> register -> serve, per task, over real HTTP ----------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    root = tmp_path_factory.mktemp("tasks")
    registry = str(root / "registry")
    servers: dict[str, RunningServer] = {}
    try:
        for name in BUNDLED:
            csv, _, target = write_bundled_csv(name, root)
            result = run_steps(csv, target, root / name, registry_uri=registry, model_name=name)
            assert result["promoted"], result["reasons"]
            servers[name] = start_server(
                ["--model", name, "--registry", registry], {}, root / f"{name}.log"
            )
        yield servers
    finally:
        for running in servers.values():
            stop_server(running)


def _instances(name: str, rows: int = 3) -> tuple[list[dict], pd.Series]:
    df, _, target = bundled_frame(name)
    sample = df.sample(rows, random_state=1)
    return sample.drop(columns=[target]).to_dict(orient="records"), sample[target]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED))
def test_v1_answers_in_the_datas_own_labels(served: dict[str, RunningServer], name: str) -> None:
    instances, truth = _instances(name)
    r = requests.post(
        f"{served[name].url}/v1/models/{name}:predict", json={"instances": instances}, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == "1" and len(body["predictions"]) == 3
    task = BUNDLED[name][1]
    for answer in body["predictions"]:
        if task == "regression":
            assert set(answer) == {"value"} and np.isfinite(answer["value"])
        elif task == "binary":
            assert answer["label"] in ("Yes", "No") and 0 <= answer["probability"] <= 1
        else:
            assert answer["label"] in set(truth.unique()) | set(answer["probabilities"])
            assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
            assert answer["label"] == max(answer["probabilities"], key=answer["probabilities"].get)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED))
def test_v2_typed_outputs_and_metadata(served: dict[str, RunningServer], name: str) -> None:
    instances, _ = _instances(name, rows=2)
    columns = list(instances[0])
    inputs = [
        {"name": c, "shape": [2], "datatype": "FP64", "data": [row[c] for row in instances]}
        for c in columns
    ]
    url = f"{served[name].url}/v2/models/{name}"
    r = requests.post(f"{url}/infer", json={"inputs": inputs}, timeout=30)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    meta = {o["name"]: o for o in requests.get(url, timeout=30).json()["outputs"]}
    assert set(meta) == set(outputs)
    task = BUNDLED[name][1]
    if task == "regression":
        assert set(outputs) == {"value"} and outputs["value"]["datatype"] == "FP64"
    elif task == "binary":
        assert outputs["label"]["datatype"] == "BYTES" == meta["label"]["datatype"]
        assert set(outputs["label"]["data"]) <= {"Yes", "No"}
    else:
        k = len(_classes(name))
        assert outputs["probabilities"]["shape"] == [2, k] and meta["probabilities"]["shape"] == [
            -1,
            k,
        ]
        assert set(outputs["label"]["data"]) <= set(_classes(name))


def _classes(name: str) -> list[str]:
    df, _, target = bundled_frame(name)
    return sorted(df[target].unique())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED))
def test_explain_for_every_task(served: dict[str, RunningServer], name: str) -> None:
    instances, _ = _instances(name, rows=2)
    r = requests.post(
        f"{served[name].url}/v1/models/{name}:explain", json={"instances": instances}, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    task = BUNDLED[name][1]
    assert (
        body["units"]
        == {
            "binary": "log-odds",
            "multiclass": "per-class margin (softmax logit)",
            "regression": "target units",
        }[task]
    )
    for e in body["explanations"]:
        if task == "multiclass":
            assert set(e["contributions"]) == set(_classes(name))
            for c, contributions in e["contributions"].items():
                total = e["bias"][c] + sum(contributions.values()) + e["residual"][c]
                assert total == pytest.approx(e["margin"][c], abs=1e-3)
        else:
            total = e["bias"] + sum(e["contributions"].values()) + e["residual"]
            assert total == pytest.approx(e["margin"], abs=1e-3)
        if task == "regression":
            assert e["margin"] == pytest.approx(e["value"], rel=1e-4, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED))
def test_feedback_in_the_users_labels_gives_live_quality_per_task(
    served: dict[str, RunningServer], name: str
) -> None:
    instances, truth = _instances(name, rows=60)
    url = f"{served[name].url}/v1/models/{name}"
    rid = f"feedback-{name}"
    r = requests.post(
        f"{url}:predict", json={"instances": instances}, headers={"x-request-id": rid}, timeout=30
    )
    assert r.status_code == 200, r.text
    answers = r.json()["predictions"]
    labels = [
        {"request_id": rid, "row": i, "label": v.item() if hasattr(v, "item") else v}
        for i, v in enumerate(truth.tolist())
    ]
    fb = requests.post(f"{url}/feedback", json={"labels": labels}, timeout=30)
    assert fb.status_code == 200 and fb.json()["accepted"] == 60, fb.text
    bad = requests.post(
        f"{url}/feedback", json={"request_id": rid, "row": 0, "label": "no-such-label"}, timeout=30
    )
    assert bad.status_code in (400, 404)
    q = requests.get(f"{url}/quality", timeout=30).json()["versions"]["1"]
    task = BUNDLED[name][1]
    if task == "regression":
        errors = np.array([a["value"] for a in answers]) - truth.to_numpy()
        assert q["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-6)
        assert q["rmse"] == pytest.approx(np.sqrt((errors**2).mean()), rel=1e-6)
        assert q["accuracy"] is None
    else:
        hits = np.mean([a["label"] == t for a, t in zip(answers, truth.tolist(), strict=True)])
        assert q["accuracy"] == pytest.approx(hits)
        assert (q["mae"], q["rmse"]) == (None, None)
