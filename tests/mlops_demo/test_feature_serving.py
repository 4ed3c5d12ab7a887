"""`mlops demo --features` as a user runs it: a real feature repository, a kfp.local training run
from it, a real feature server and a real model server answering requests by customer id."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from components.feature_store import FeatureStoreConfig, online_features
from mlops_core.registry import ModelRegistry

pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
pytestmark = pytest.mark.slow  # kfp.local run, feature server and model server

MLOPS = str(Path(sys.executable).with_name("mlops"))


def test_demo_with_features_trains_from_the_store_and_serves_by_key(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "220"}
    args = [MLOPS, "demo", "--features", "--rows", "300", "--work-dir", str(tmp_path)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "answered 200 customers by key" in out
    assert "unknown customer 99999: 404 no features for customer_id 99999" in out

    # v1 was trained from the store: its lineage names the training set and the views.
    mv = ModelRegistry(str(tmp_path / "demo" / "registry")).get("churn", 1)
    assert mv.feature_lineage["rows"] == 300 and mv.feature_lineage["dropped_rows"] == 0
    repo = tmp_path / "demo" / "features"
    assert mv.data_source.startswith(f"feature-store:{repo}:")

    # The values the model server was scored with are the online store's.
    line = re.search(r"customer (\d+): prediction .* from contract=(\S+), tenure_months=(\S+)", out)
    assert line is not None, out
    online = online_features(FeatureStoreConfig(repo_path=str(repo)), [int(line[1])])
    assert (line[2], float(line[3])) == (
        online["contract"].iloc[0],
        float(online["tenure_months"].iloc[0]),
    )
