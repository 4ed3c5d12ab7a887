"""The feature materialization pipeline: golden YAML up to date, and kfp.local runs against a real
Feast repository (file offline store, SQLite online store) that materialize incrementally."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.feature_store import (
    FeatureStoreConfig,
    apply_definitions,
    online_features,
    open_store,
    write_tables,
)
from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP, generate_churn_tables
from mlops_core.settings import DEFAULT_CLUSTER_FEATURE_REPO, DEFAULT_CLUSTER_ONLINE_STORE
from pipelines.feature_materialization import (
    GOLDEN_YAML,
    compile_materialization,
    run_materialization_locally,
)
from pipelines.training import ObjectStore


def test_committed_yaml_is_up_to_date(tmp_path: Path) -> None:
    fresh = compile_materialization(tmp_path / "feature_materialization.yaml")
    assert fresh.read_text() == GOLDEN_YAML.read_text(), (
        "pipelines/feature_materialization.yaml is stale: run `make compile` and commit it"
    )


def test_image_is_a_compile_time_argument(tmp_path: Path) -> None:
    doc, platform_doc = yaml.safe_load_all(
        compile_materialization(tmp_path / "p.yaml", "reg.local/c:1").read_text()
    )
    images = {e["container"]["image"] for e in doc["deploymentSpec"]["executors"].values()}
    assert images == {"reg.local/c:1"}
    assert list(doc["root"]["dag"]["tasks"]) == ["materialize-features"]
    params = doc["root"]["inputDefinitions"]["parameters"]
    assert params["end"]["defaultValue"] == ""
    # The cluster form: `make deploy`'s repository, object store and Redis, with no edits.
    assert params["feature_repo"]["defaultValue"] == DEFAULT_CLUSTER_FEATURE_REPO
    (executor,) = doc["deploymentSpec"]["executors"].values()
    env = {e["name"]: e["value"] for e in executor["container"]["env"]}
    assert env == {
        "AWS_ENDPOINT_URL": ObjectStore().endpoint_url,
        "MLOPS_FEATURE_ONLINE_STORE": DEFAULT_CLUSTER_ONLINE_STORE,
    }
    platform = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (secret,) = next(iter(platform.values()))["secretAsEnv"]
    assert secret["secretName"] == ObjectStore().secret_name


@pytest.mark.slow
def test_runs_materialize_only_what_is_new(tmp_path: Path) -> None:
    pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
    tables = generate_churn_tables(40, seed=5)
    config = FeatureStoreConfig(repo_path=str(tmp_path / "features"))
    write_tables(config, tables)
    apply_definitions(config)
    ids = [100_000, 100_001]
    first_end = tables.last_event + timedelta(hours=1)

    first = run_materialization_locally(
        feature_repo=config.repo_path, work_dir=tmp_path, end=first_end.isoformat()
    )
    views = {v["view"]: v for v in first["views"]}
    assert views["customer_profile"]["first_time"] and views["customer_activity"]["first_time"]
    earliest = tables.customer_activity[EVENT_TIMESTAMP].min()
    assert pd.Timestamp(views["customer_activity"]["start"]) == earliest
    assert (views["customer_activity"]["rows"], views["customer_activity"]["customers"]) == (
        120,
        40,
    )
    assert views["customer_profile"]["rows"] == 40
    latest = tables.customer_activity.groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)
    before = online_features(config, ids).set_index(ENTITY_KEY)
    assert list(before["logins_30d"]) == list(latest.loc[ids, "logins_30d"].astype(float))

    # New activity after the first end, and a late row inside the materialized window: the second
    # run reads only from the first end on, so the late row never reaches the online store.
    new = latest.loc[ids].reset_index()
    new[EVENT_TIMESTAMP] = first_end + timedelta(days=2)
    new["logins_30d"] = [250.0, 251.0]
    late = latest.loc[[100_002]].reset_index()
    late[EVENT_TIMESTAMP] = first_end - timedelta(minutes=1)
    late["logins_30d"] = 299.0
    activity = pd.concat([tables.customer_activity, new, late], ignore_index=True)
    activity.to_parquet(config.table_uri("customer_activity"), index=False)
    second_end = first_end + timedelta(days=3)

    second = run_materialization_locally(
        feature_repo=config.repo_path, work_dir=tmp_path, end=second_end.isoformat()
    )
    views = {v["view"]: v for v in second["views"]}
    activity_run = views["customer_activity"]
    assert not activity_run["first_time"] and activity_run["materialized"]
    assert pd.Timestamp(activity_run["start"]) == first_end
    assert (activity_run["rows"], activity_run["customers"]) == (2, 2)
    assert views["customer_profile"]["rows"] == 0  # nothing new, the window still recorded
    after = online_features(config, [*ids, 100_002]).set_index(ENTITY_KEY)
    assert list(after["logins_30d"]) == [250.0, 251.0, float(latest.loc[100_002, "logins_30d"])]

    # Feast's registry holds the two adjacent windows, the old one not repeated.
    intervals = open_store(config).get_feature_view("customer_activity").materialization_intervals
    ends = [(pd.Timestamp(a), pd.Timestamp(b)) for a, b in intervals]
    assert ends == [(earliest, first_end), (first_end, second_end)]
