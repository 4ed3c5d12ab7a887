"""The training pipeline (kfp.local) trains from the feature store: its point-in-time-correct
training set, with the set's lineage in the registry and in `mlops audit`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from components.feature_definitions import CHURN_VIEWS
from components.feature_store import (
    FeatureStoreConfig,
    apply_definitions,
    training_set,
    write_tables,
)
from mlops_core.churn_feature_tables import generate_churn_tables
from mlops_core.registry import ModelRegistry
from pipelines.local_run import TrainingParams, run_training_locally

pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
pytestmark = pytest.mark.slow


def test_local_run_trains_from_the_feature_store_and_records_its_lineage(tmp_path: Path) -> None:
    tables = generate_churn_tables(1500, seed=8)
    config = FeatureStoreConfig(repo_path=str(tmp_path / "features"))
    write_tables(config, tables)
    apply_definitions(config)
    # Labels a year after every snapshot have no activity in force: dropped, and counted.
    labels = tables.labels.copy()
    labels.loc[:99, "event_timestamp"] += pd.Timedelta(days=365)
    labels_path = tmp_path / "labels.parquet"
    labels.to_parquet(labels_path, index=False)
    expected = training_set(config, labels).lineage

    registry = tmp_path / "registry"
    result = run_training_locally(
        TrainingParams(feature_store=config.repo_path, data_source=str(labels_path), seed=8),
        registry_uri=str(registry),
        model_name="churn",
        work_dir=tmp_path,
    )
    assert result["promoted"] and result["version"] == 1
    mv = ModelRegistry(str(registry)).get("churn", 1)
    lineage = mv.feature_lineage
    assert lineage["fingerprint"] == expected.fingerprint
    assert (lineage["rows"], lineage["dropped_rows"]) == (1400, 100)
    assert lineage["views"] == {
        v.name: {"definition_sha": v.definition_sha(), "max_age_s": v.ttl.total_seconds()}
        for v in CHURN_VIEWS
    }
    assert mv.data_source == f"feature-store:{config.repo_path}:{labels_path}"
    assert result["feature_lineage"] == lineage
    assert 0.7 < mv.metrics["roc_auc"] < 1.0

    # `mlops audit` traces a prediction of this version to the training set and view definitions.
    audit = tmp_path / "audit"
    audit.mkdir()
    record = {"request_id": "r-1", "model": "churn", "version": "1", "revision": "local"}
    (audit / "predictions.jsonl").write_text(json.dumps(record | {"at": time.time()}) + "\n")
    exe = Path(sys.executable).with_name("mlops")
    out = subprocess.run(
        [str(exe), "audit", "r-1", "--audit-dir", str(audit), "--registry", str(registry)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # rich wraps lines at the terminal's width
    assert f"fingerprint {expected.fingerprint}, 1400 rows" in text
    assert "(100 label rows had no features in force)" in text
    for view in CHURN_VIEWS:
        assert f"feature view {view.name}: definition {view.definition_sha()[:16]}" in text
