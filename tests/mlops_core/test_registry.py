"""The registry: versions, champion pointer, rollback, and a tampered artifact refused on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.train import TrainParams, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import IntegrityError, ModelRegistry, RegistryError


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object]:
    df = generate_churn(800, seed=4)
    pipeline = train_model(df, CHURN_SCHEMA, TrainParams("logistic_regression")).pipeline
    path = tmp_path_factory.mktemp("model") / "model.skops"
    save_model(pipeline, str(path))
    return str(path), pipeline


def _register(reg: ModelRegistry, path: str, auc: float) -> int:
    df = generate_churn(200)
    return reg.register(
        "churn",
        path,
        schema=CHURN_SCHEMA,
        reference=profile_reference(df, CHURN_SCHEMA),
        metrics={"roc_auc": auc},
        data_fingerprint="abc",
        run_id="run-1",
    ).version


def test_versions_champion_and_rollback(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    assert reg.champion("churn") is None
    with pytest.raises(RegistryError, match="no champion yet"):
        reg.get("churn")
    assert [_register(reg, artifact[0], a) for a in (0.8, 0.81, 0.82)] == [1, 2, 3]
    reg.set_champion("churn", 1, reason="first")
    reg.set_champion("churn", 3, reason="better")
    assert reg.get("churn").version == 3
    assert reg.get("churn", "latest").metrics == {"roc_auc": 0.82}
    assert reg.rollback("churn") == 1
    assert reg.champion("churn") == 1
    history = reg.champion_doc("churn")["history"]
    assert [h["version"] for h in history] == [1, 3, 1]
    assert reg.rollback("churn", 2, reason="pick 2") == 2
    with pytest.raises(RegistryError, match="already the champion"):
        reg.rollback("churn", 2)
    assert reg.schema("churn") == CHURN_SCHEMA
    assert reg.reference("churn").feature("region").kind == "categorical"


def test_loaded_model_predicts_like_the_original(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    _register(reg, artifact[0], 0.8)
    reg.set_champion("churn", 1, reason="first")
    df = generate_churn(50, seed=9)
    loaded = reg.load_model("churn")
    assert (
        predict_proba(loaded, df, CHURN_SCHEMA) == predict_proba(artifact[1], df, CHURN_SCHEMA)
    ).all()


def test_tampered_artifact_is_refused(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    _register(reg, artifact[0], 0.8)
    stored = Path(reg.artifact_path("churn", 1).removeprefix("file://"))
    stored.write_bytes(stored.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match="was modified after registration"):
        reg.load_model("churn", 1)
