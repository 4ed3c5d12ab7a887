"""The feature store with real Feast (file offline store, SQLite online store) on real files.

Pinned here: point-in-time correctness (a planted future row is never used in training), zero
training/serving skew on 1,000 sampled customers, and the lineage a training set carries.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.feature_definitions import CHURN_VIEWS, feature_names
from components.feature_store import (
    FeatureRepoNotFoundError,
    FeatureStoreConfig,
    FeatureStoreError,
    apply_definitions,
    materialize,
    online_features,
    training_set,
    write_tables,
)
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.churn_feature_tables import (
    DEFAULT_START,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    ChurnTables,
    generate_churn_tables,
)

pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
pytestmark = pytest.mark.slow
TARGET = CHURN_SCHEMA.target


def _repo(path: Path, tables: ChurnTables) -> FeatureStoreConfig:
    config = FeatureStoreConfig(repo_path=str(path))
    write_tables(config, tables)
    apply_definitions(config)
    return config


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ENTITY_KEY).set_index(ENTITY_KEY)


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    """Value by value: equal, or both missing (numbers compared as floats)."""
    if a.dtype != object or b.dtype != object:
        a, b = a.astype(float), b.astype(float)
    return (a == b) | (a.isna() & b.isna())


@pytest.fixture(scope="module")
def tables() -> ChurnTables:
    return generate_churn_tables(1500, seed=11)


@pytest.fixture(scope="module")
def repo(tables: ChurnTables, tmp_path_factory: pytest.TempPathFactory) -> FeatureStoreConfig:
    return _repo(tmp_path_factory.mktemp("features"), tables)


def test_training_set_is_the_flat_table_as_of_each_label(
    repo: FeatureStoreConfig, tables: ChurnTables
) -> None:
    result = training_set(repo, tables.labels)
    frame = result.frame
    assert list(frame.columns) == [ENTITY_KEY, EVENT_TIMESTAMP, *feature_names(), TARGET]
    assert feature_names() == CHURN_SCHEMA.feature_names  # the model's columns, its order
    got, want = _by_key(frame), _by_key(tables.flat)
    for column in [*CHURN_SCHEMA.feature_names, TARGET]:
        assert _same(got[column], want[column]).all(), column
    lineage = result.lineage
    assert (lineage.rows, lineage.dropped_rows) == (1500, 0)
    assert lineage.views == {
        v.name: {"definition_sha": v.definition_sha(), "max_age_s": v.ttl.total_seconds()}
        for v in CHURN_VIEWS
    }
    assert lineage.views["customer_activity"]["max_age_s"] == 45 * 86400
    # The same labels give the same fingerprint; one changed label gives another.
    assert training_set(repo, tables.labels).lineage.fingerprint == lineage.fingerprint
    flipped = tables.labels.copy()
    flipped.loc[0, TARGET] = 1 - flipped.loc[0, TARGET]
    assert training_set(repo, flipped).lineage.fingerprint != lineage.fingerprint


def test_a_planted_future_row_is_never_used_in_training(tmp_path: Path) -> None:
    base = generate_churn_tables(200, seed=4)
    labels = base.labels.set_index(ENTITY_KEY)[EVENT_TIMESTAMP]
    planted_ids = base.labels[ENTITY_KEY].iloc[::10].to_numpy()  # 20 customers
    future = []
    for delay in (pd.Timedelta(seconds=1), pd.Timedelta(days=3)):
        rows = base.customer_activity.groupby(ENTITY_KEY).tail(1)
        rows = rows[rows[ENTITY_KEY].isin(planted_ids)].copy()
        rows[EVENT_TIMESTAMP] = labels.loc[rows[ENTITY_KEY]].to_numpy() + delay
        rows[["tenure_months", "logins_30d", "monthly_charges"]] = [72, 299.0, 249.0]
        future.append(rows)
    profile_future = base.customer_profile[base.customer_profile[ENTITY_KEY].isin(planted_ids)]
    profile_future = profile_future.assign(
        **{
            EVENT_TIMESTAMP: labels.loc[profile_future[ENTITY_KEY]].to_numpy()
            + pd.Timedelta(seconds=1),
            "contract": "planted",
        }
    )
    planted = ChurnTables(
        labels=base.labels,
        customer_profile=pd.concat([base.customer_profile, profile_future], ignore_index=True),
        customer_activity=pd.concat([base.customer_activity, *future], ignore_index=True),
        flat=base.flat,
    )
    config = _repo(tmp_path, planted)

    frame = _by_key(training_set(config, base.labels).frame)
    assert len(frame) == 200
    assert not (frame["logins_30d"] == 299.0).any()
    assert not (frame["contract"] == "planted").any()
    want = _by_key(base.flat)
    for column in CHURN_SCHEMA.feature_names:
        assert _same(frame[column], want[column]).all(), column

    # The control: asked a day after the labels, the same store does use the planted rows.
    later = base.labels.assign(
        **{EVENT_TIMESTAMP: base.labels[EVENT_TIMESTAMP] + timedelta(days=1)}
    )
    seen = _by_key(training_set(config, later).frame)
    assert (seen.loc[planted_ids, "logins_30d"] == 299.0).all()
    assert (seen.loc[planted_ids, "contract"] == "planted").all()
    assert not (seen.drop(index=planted_ids)["logins_30d"] == 299.0).any()


def test_activity_older_than_its_ttl_is_not_used(
    repo: FeatureStoreConfig, tables: ChurnTables
) -> None:
    last = tables.customer_activity.groupby(ENTITY_KEY)[EVENT_TIMESTAMP].max()
    late = tables.labels.head(50).copy()
    late[EVENT_TIMESTAMP] = last.loc[late[ENTITY_KEY]].to_numpy() + pd.Timedelta(days=46)
    # Feast's file store drops a label row a view has no row in force for; the lineage counts it.
    result = training_set(repo, late)
    assert (result.lineage.rows, result.lineage.dropped_rows) == (0, 50)
    within = late.assign(**{EVENT_TIMESTAMP: late[EVENT_TIMESTAMP] - pd.Timedelta(days=2)})
    kept = training_set(repo, within)
    assert (kept.lineage.rows, kept.lineage.dropped_rows) == (50, 0)
    assert kept.frame["tenure_months"].notna().all()


def test_online_values_equal_training_values_for_1000_customers(
    repo: FeatureStoreConfig, tables: ChurnTables
) -> None:
    """Same customer, same time: the training path and the serving path agree on every value."""
    at = tables.last_event + timedelta(seconds=1)
    materialize(repo, DEFAULT_START - timedelta(days=30), at)
    rng = np.random.default_rng(0)
    ids = rng.choice(tables.labels[ENTITY_KEY].to_numpy(), size=1000, replace=False)
    online = online_features(repo, ids.tolist())
    assert list(online[ENTITY_KEY]) == ids.tolist()
    asked = pd.DataFrame({ENTITY_KEY: ids, EVENT_TIMESTAMP: at, TARGET: 0})
    offline = training_set(repo, asked).frame
    assert len(offline) == 1000
    on, off = _by_key(online), _by_key(offline)
    mismatches = {
        column: int((~_same(on[column], off[column])).sum()) for column in feature_names()
    }
    assert mismatches == dict.fromkeys(feature_names(), 0)
    # The comparison can fail: a customer's earlier snapshot differs from its served values.
    earlier = training_set(
        repo, asked.assign(**{EVENT_TIMESTAMP: DEFAULT_START + timedelta(days=2)})
    )
    assert not _same(_by_key(earlier.frame)["logins_30d"], on["logins_30d"]).all()


def test_refusals_name_what_is_missing(repo: FeatureStoreConfig, tmp_path: Path) -> None:
    with pytest.raises(FeatureStoreError, match="churned"):
        training_set(repo, pd.DataFrame({ENTITY_KEY: [1], EVENT_TIMESTAMP: [DEFAULT_START]}))
    with pytest.raises(FeatureRepoNotFoundError, match="apply the definitions first"):
        training_set(
            FeatureStoreConfig(repo_path=str(tmp_path / "empty")),
            pd.DataFrame({ENTITY_KEY: [1], EVENT_TIMESTAMP: [DEFAULT_START], TARGET: [0]}),
        )
    with pytest.raises(FeatureRepoNotFoundError, match="write them first"):
        apply_definitions(FeatureStoreConfig(repo_path=str(tmp_path / "no-tables")))
