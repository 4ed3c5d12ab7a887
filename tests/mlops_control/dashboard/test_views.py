"""The feature page's JSON: the slice column's page joins the version's holdout metrics per slice
(from the registry) with each slice's training and live share; any other feature names the slice
column; a version without slice metrics, or with a corrupt record, still gets its page."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mlops_control.dashboard.local_source import LocalSource
from mlops_control.dashboard.views import DashboardData, slice_table
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.drift import FeatureProfile
from mlops_core.registry import ModelRegistry
from mlops_core.slices import MISSING_SLICE, SliceMetrics
from tests.mlops_control.dashboard.harness import register_models, write_monitoring


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> DashboardData:
    root = tmp_path_factory.mktemp("views")
    registry_uri = str(root / "registry")
    register_models(registry_uri, ["churn"])
    write_monitoring(root / "audit", registry_uri, "churn", scenario="covariate_shift")
    return DashboardData(ModelRegistry(registry_uri), LocalSource([root / "audit"]))


def test_the_slice_columns_page_gives_each_slices_shares_and_holdout_metrics(
    data: DashboardData,
) -> None:
    doc = data.feature("churn", "contract")
    recorded = data.registry.slices("churn", 1)
    assert recorded is not None and recorded.column == "contract"
    assert doc["slice_column"] == "contract" and doc["slice_error"] is None
    slices = doc["slices"]
    assert (slices["column"], slices["task"]) == ("contract", "binary")
    assert slices["shown_metrics"] == ["roc_auc", "accuracy"]
    reference = data.registry.reference("churn", 1).feature("contract")
    # Categories in the reference's order, missing values (None) last if the holdout had any.
    named = [c["category"] for c in slices["categories"] if c["category"] is not None]
    assert named == [c for c in reference.categories if c in recorded.metrics]
    assert len(slices["categories"]) == len(recorded.metrics)
    assert sum(c["holdout_rows"] for c in slices["categories"]) == 1000  # the harness' holdout
    for row in slices["categories"]:
        key = MISSING_SLICE if row["category"] is None else row["category"]
        bucket = doc["bins"].index("missing" if row["category"] is None else row["category"])
        assert row["training_share"] == reference.proportions[bucket]
        assert row["live_share"] == doc["live"][bucket]
        stored = recorded.metrics[key]
        assert row["holdout_rows"] == int(stored["rows"])
        assert set(row["metrics"]) == set(stored) - {"rows"}
        for name, value in row["metrics"].items():
            assert value == stored[name] if math.isfinite(stored[name]) else value is None
    assert all(0 < c["live_share"] < 1 for c in slices["categories"] if c["category"])
    assert math.isclose(sum(c["training_share"] for c in slices["categories"]), 1.0)


def test_another_feature_names_the_slice_column(data: DashboardData) -> None:
    doc = data.feature("churn", "monthly_charges")
    assert doc["slices"] is None and doc["slice_column"] == "contract"
    assert doc["live"] is not None  # the rest of the page is unchanged


def test_a_version_without_slice_metrics_or_with_a_corrupt_record(
    data: DashboardData, tmp_path: Path
) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    artifact = Path(data.registry.artifact_path("churn", 1).removeprefix("file://"))
    for name in ("old", "corrupt"):  # registered as before the registry kept slice metrics
        v = registry.register(
            name,
            str(artifact),
            schema=CHURN_SCHEMA,
            reference=data.registry.reference("churn", 1),
        ).version
        registry.set_champion(name, v, reason="test")
    (tmp_path / "registry" / "corrupt" / "versions" / "1" / "slices.json").write_text("{")
    plain = DashboardData(registry, LocalSource([tmp_path / "audit"]))
    doc = plain.feature("old", "contract")
    assert (doc["slices"], doc["slice_column"], doc["slice_error"]) == (None, None, None)
    assert doc["reference"] and doc["version"] == "1"
    doc = plain.feature("corrupt", "contract")
    assert doc["slices"] is None and "slices.json" in doc["slice_error"]
    assert doc["reference"]  # the distribution is still shown


def test_missing_values_and_a_category_the_reference_never_saw() -> None:
    profile = FeatureProfile("plan", "categorical", (0.5, 0.3, 0.0, 0.2), categories=("a", "b"))
    recorded = SliceMetrics(
        "plan",
        "regression",
        {
            MISSING_SLICE: {"rmse": 2.0, "mae": 1.5, "rows": 20.0},
            "new": {"rmse": 9.0, "mae": 7.0, "rows": 3.0},
            "b": {"rmse": 1.0, "mae": float("nan"), "rows": 30.0},
            "a": {"rmse": 0.5, "mae": 0.4, "rows": 50.0},
        },
    )
    table = slice_table(recorded, profile, [0.4, 0.4, 0.1, 0.1])
    assert table["shown_metrics"] == ["rmse", "mae"]
    assert [
        (c["category"], c["training_share"], c["live_share"], c["holdout_rows"])
        for c in table["categories"]
    ] == [("a", 0.5, 0.4, 50), ("b", 0.3, 0.4, 30), ("new", None, None, 3), (None, 0.2, 0.1, 20)]
    assert table["categories"][1]["metrics"] == {"rmse": 1.0, "mae": None}
    no_live = slice_table(recorded, profile, None)
    assert [c["live_share"] for c in no_live["categories"]] == [None] * 4
