"""The registry: versions, champion pointer, rollback, and a tampered artifact refused on load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from components.train import TrainParams, predict_proba, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import (
    ChampionConflictError,
    CorruptRegistryFileError,
    IntegrityError,
    ModelRegistry,
    RegistryError,
    RegistryNotFoundError,
    promotion_stack,
    sha256_file,
)
from mlops_core.registry_store import UnsupportedStoreError
from mlops_core.slices import MISSING_SLICE, SliceMetrics


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
    assert [_register(reg, artifact[0], a) for a in (0.8, 0.81, 0.82)] == [1, 2, 3]
    with pytest.raises(RegistryError, match="no champion yet"):
        reg.get("churn")
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


def test_slice_metrics_round_trip_and_a_version_without_them_reads_as_none(
    tmp_path: Path, artifact
) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    assert _register(reg, artifact[0], 0.8) == 1  # as versions were registered before slices
    slices = SliceMetrics(
        "contract",
        "binary",
        {
            "month-to-month": {"roc_auc": 0.71, "accuracy": 0.66, "rows": 410.0},
            "two-year": {"roc_auc": float("nan"), "accuracy": 0.98, "rows": 95.0},  # one class
            MISSING_SLICE: {"roc_auc": 0.5, "accuracy": 0.7, "rows": 10.0},
        },
    )
    v2 = reg.register(
        "churn",
        artifact[0],
        schema=CHURN_SCHEMA,
        reference=profile_reference(generate_churn(200), CHURN_SCHEMA),
        slices=slices,
    ).version
    assert reg.slices("churn", 1) is None
    read = reg.slices("churn", v2)
    assert read is not None and (read.column, read.task) == ("contract", "binary")
    assert read.shown == ("roc_auc", "accuracy")
    assert read.metrics["month-to-month"] == slices.metrics["month-to-month"]
    assert read.metrics[MISSING_SLICE] == slices.metrics[MISSING_SLICE]
    two_year = read.metrics["two-year"]
    assert math.isnan(two_year["roc_auc"]) and two_year["rows"] == 95.0
    assert (
        reg.get("churn", v2).metrics == {}
    )  # version.json is unchanged: slices are their own file
    file = tmp_path / "reg" / "churn" / "versions" / str(v2) / "slices.json"
    file.write_text('{"column": "contract", "metrics": {"a": {"rows": "ten"}}}')
    with pytest.raises(CorruptRegistryFileError, match=r"slices\.json is not a slice metrics"):
        reg.slices("churn", v2)


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


def test_rollback_walks_history_backwards_and_never_toggles(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    for auc in (0.8, 0.81, 0.82):
        _register(reg, artifact[0], auc)
    for v in (1, 2, 3):
        reg.set_champion("churn", v, reason=f"promote {v}")
    assert reg.rollback("churn") == 2
    assert reg.rollback("churn") == 1  # the probe saw 3 -> 2 -> 3 here
    with pytest.raises(ChampionConflictError, match="no earlier champion"):
        reg.rollback("churn")
    assert [h["version"] for h in reg.champion_doc("churn")["history"]] == [1, 2, 3, 2, 1]


def test_a_rollback_never_returns_to_the_version_it_rolled_back_from(
    tmp_path: Path, artifact
) -> None:
    """The probe: promote v3, `rollback --to 2`, `rollback` made v3 champion again."""
    reg = ModelRegistry(str(tmp_path / "reg"))
    for auc in (0.8, 0.81, 0.82):
        _register(reg, artifact[0], auc)
    reg.set_champion("churn", 1, reason="first")
    reg.set_champion("churn", 3, reason="promote 3")
    assert reg.rollback("churn", 2) == 2
    assert reg.rollback("churn") == 1  # not 3: v3 was rolled back from
    with pytest.raises(ChampionConflictError, match="no earlier champion"):
        reg.rollback("churn")
    reg.set_champion("churn", 3, reason="fixed and promoted again")
    assert reg.rollback("churn") == 1  # an explicit promotion puts v3 back on the stack


def test_promotion_stack_drops_every_version_rolled_back_from() -> None:
    def entry(version: int, action: str = "promote") -> dict[str, object]:
        return {"version": version, "action": action}

    history = [entry(1), entry(2), entry(3), entry(4), entry(2, "rollback"), entry(5)]
    assert promotion_stack(history) == [1, 2, 5]
    history += [entry(3, "rollback")]  # 3 was skipped by the first rollback: pushed, 5 dropped
    assert promotion_stack(history) == [1, 2, 3]
    assert promotion_stack([*history, entry(9, "rollback")]) == [1, 2, 9]


def test_promoting_the_champion_is_refused_and_leaves_no_entry(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    _register(reg, artifact[0], 0.8)
    _register(reg, artifact[0], 0.81)
    reg.set_champion("churn", 1, reason="first")
    reg.set_champion("churn", 2, reason="second")
    with pytest.raises(ChampionConflictError, match="already the champion"):
        reg.set_champion("churn", 2, reason="again")
    assert len(reg.champion_doc("churn")["history"]) == 2
    assert reg.rollback("churn") == 1  # the probe: after `promote N` on N, rollback always failed


def test_champion_compare_and_swap(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    for auc in (0.8, 0.81):
        _register(reg, artifact[0], auc)
    reg.set_champion("churn", 1, reason="first", expected=None)
    with pytest.raises(ChampionConflictError, match="is v1, not no champion"):
        reg.set_champion("churn", 2, reason="stale gate", expected=None)
    reg.set_champion("churn", 2, reason="fresh gate", expected=1)
    assert reg.champion("churn") == 2


def test_versions_are_written_whole_and_leave_no_temp_files(tmp_path: Path, artifact) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    _register(reg, artifact[0], 0.8)
    reg.set_champion("churn", 1, reason="first")
    leftovers = [p for p in (tmp_path / "reg").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert reg.get("churn", 1).artifact_sha256 == sha256_file(reg.artifact_path("churn", 1))


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("versions/1/version.json", "{not json", ["version.json", "is corrupt"]),
        ("versions/1/version.json", '{"a": 1}{"b": 2}', ["version.json", "Extra data"]),
        ("versions/1/version.json", '{"model": "churn"}', ["version.json", "missing"]),
        ("versions/1/version.json", "[1, 2]", ["version.json", "not a ModelVersion record"]),
        ("versions/1/reference.json", '{"rows": 1}{}', ["reference.json", "Extra data"]),
        ("versions/1/reference.json", "{}", ["reference.json", "not a reference profile"]),
        ("versions/1/schema.json", '{"features": 3}', ["schema.json", "is corrupt"]),
        ("champion/00000001.json", "\xff\xfe", ["00000001.json", "is corrupt"]),
        ("champion/00000001.json", '{"version": "one"}', ["00000001.json", "not a champion entry"]),
    ],
)
def test_corrupt_registry_files_name_the_file_and_the_fault(
    tmp_path: Path, artifact, file: str, content: str, words: list[str]
) -> None:
    reg = ModelRegistry(str(tmp_path / "reg"))
    _register(reg, artifact[0], 0.8)
    reg.set_champion("churn", 1, reason="first")
    (tmp_path / "reg" / "churn" / file).write_text(content)
    with pytest.raises(CorruptRegistryFileError) as info:
        reg.get("churn")
        reg.schema("churn")
        reg.reference("churn")
    for word in words:
        assert word in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_registry_is_not_called_no_champion(tmp_path: Path) -> None:
    reg = ModelRegistry(str(tmp_path / "nowhere"))
    with pytest.raises(RegistryNotFoundError, match="does not exist"):
        reg.get("churn")


def test_memory_store_works_and_stores_without_create_if_absent_are_refused(
    tmp_path: Path, artifact
) -> None:
    reg = ModelRegistry("memory://registry-test")
    assert _register(reg, artifact[0], 0.8) == 1
    reg.set_champion("churn", 1, reason="first", expected=None)
    assert reg.load_model("churn") is not None
    # A caching wrapper over a local folder: readable, but with no atomic create of its own.
    cached = ModelRegistry(f"simplecache::file://{tmp_path}/cached")
    with pytest.raises(UnsupportedStoreError, match="create-if-absent"):
        _register(cached, artifact[0], 0.8)


@pytest.mark.slow
def test_concurrent_registrations_lose_nothing_and_promote_only_compared(tmp_path: Path) -> None:
    # The probe's shape (6 processes registering at once), with 8 registrations each; real
    # processes (spawned interpreters) on one registry folder.
    from tests.mlops_core.registry_soak import soak

    result = soak(str(tmp_path / "reg"), processes=6, registrations=8)
    assert result.raw_errors == []
    assert result.versions_registered == 48
    assert (result.versions_lost, result.files_corrupted, result.champions_uncompared) == (0, 0, 0)
    assert result.promotions >= 1
