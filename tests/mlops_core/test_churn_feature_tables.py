"""The churn feature tables: the same customers as the flat generator, spread over time."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from mlops_core.churn_data import CHURN_SCHEMA, DataGenerationError, generate_churn
from mlops_core.churn_feature_tables import (
    ACTIVITY_FEATURES,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    PROFILE_FEATURES,
    RECENT_SNAPSHOT_AGE,
    generate_churn_tables,
    recent_start,
    write_churn_tables,
)


def _as_of(tables_labels: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """A hand-written point-in-time join: the latest row of `table` at or before each label."""
    return pd.merge_asof(
        tables_labels.sort_values(EVENT_TIMESTAMP),
        table.sort_values(EVENT_TIMESTAMP),
        on=EVENT_TIMESTAMP,
        by=ENTITY_KEY,
        direction="backward",
    ).sort_values(ENTITY_KEY, ignore_index=True)


def test_tables_hold_the_flat_generators_customers() -> None:
    t = generate_churn_tables(400, seed=3, snapshots=4)
    flat = generate_churn(400, seed=3)
    assert len(t.labels) == len(t.customer_profile) == len(t.flat) == 400
    assert len(t.customer_activity) == 4 * 400
    assert t.labels[ENTITY_KEY].is_unique
    assert list(t.labels[CHURN_SCHEMA.target]) == list(flat[CHURN_SCHEMA.target])
    pd.testing.assert_frame_equal(
        t.flat.drop(columns=[ENTITY_KEY, EVENT_TIMESTAMP]), flat, check_dtype=False
    )
    assert set(PROFILE_FEATURES) | set(ACTIVITY_FEATURES) == set(CHURN_SCHEMA.feature_names)


def test_point_in_time_join_gives_back_the_flat_table() -> None:
    t = generate_churn_tables(300, seed=1)
    labels = t.labels.drop(columns=[CHURN_SCHEMA.target])
    joined = _as_of(_as_of(labels, t.customer_profile), t.customer_activity)
    expected = t.flat.sort_values(ENTITY_KEY, ignore_index=True)
    for column in CHURN_SCHEMA.feature_names:
        pd.testing.assert_series_equal(
            joined[column], expected[column], check_dtype=False, check_names=False
        )


def test_history_differs_from_the_last_snapshot_and_comes_before_each_label() -> None:
    t = generate_churn_tables(200, seed=2, snapshots=3, snapshot_days=30)
    activity = t.customer_activity
    per_customer = activity.groupby(ENTITY_KEY)[EVENT_TIMESTAMP]
    assert (per_customer.count() == 3).all()
    gaps = per_customer.diff().dropna()
    assert (gaps == pd.Timedelta(days=30)).all()
    last = activity.groupby(ENTITY_KEY).tail(1).set_index(ENTITY_KEY)
    first = activity.groupby(ENTITY_KEY).head(1).set_index(ENTITY_KEY)
    labels = t.labels.set_index(ENTITY_KEY)
    age = labels[EVENT_TIMESTAMP] - last[EVENT_TIMESTAMP]
    assert (age > pd.Timedelta(0)).all() and (age < pd.Timedelta(days=30)).all()
    assert (first["tenure_months"] <= last["tenure_months"]).all()
    assert (first["logins_30d"] != last["logins_30d"]).mean() > 0.5
    profile_at = t.customer_profile.set_index(ENTITY_KEY)[EVENT_TIMESTAMP]
    assert (profile_at < first[EVENT_TIMESTAMP]).all()


def test_same_seed_same_tables_other_seed_other_tables() -> None:
    a, b = generate_churn_tables(100, seed=5), generate_churn_tables(100, seed=5)
    c = generate_churn_tables(100, seed=6)
    for name, frame in a.frames().items():
        pd.testing.assert_frame_equal(frame, b.frames()[name])
    assert not a.customer_activity.equals(c.customer_activity)


def test_scenarios_carry_over(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clean = generate_churn_tables(2000, seed=0)
    shifted = generate_churn_tables(2000, seed=0, scenario="covariate_shift")
    assert shifted.flat["monthly_charges"].mean() > 1.2 * clean.flat["monthly_charges"].mean()
    broken = generate_churn_tables(500, seed=0, scenario="broken")
    paths = write_churn_tables(broken, tmp_path)
    assert sorted(paths) == ["customer_activity", "customer_profile", "flat", "labels"]
    activity = pd.read_parquet(paths["customer_activity"])
    last = activity.groupby(ENTITY_KEY).tail(1)
    assert (last["monthly_charges"] == "n/a").sum() > 0  # the wrong type survives the round trip
    assert last["tenure_months"].isna().sum() >= 50  # the required column's nulls too
    labels = pd.read_parquet(paths["labels"])
    assert str(labels[EVENT_TIMESTAMP].dt.tz) == "UTC"


def test_refuses_what_it_cannot_make() -> None:
    with pytest.raises(DataGenerationError, match="time zone"):
        generate_churn_tables(10, start=datetime(2026, 1, 1))
    with pytest.raises(DataGenerationError, match="snapshot"):
        generate_churn_tables(10, snapshots=0)
    with pytest.raises(DataGenerationError, match="unknown scenario"):
        generate_churn_tables(10, scenario="nope", start=datetime(2026, 1, 1, tzinfo=UTC))


def test_recent_start_makes_the_latest_snapshots_about_ten_days_old() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    tables = generate_churn_tables(200, seed=1, start=recent_start(now))
    latest = tables.customer_activity.groupby(ENTITY_KEY)[EVENT_TIMESTAMP].max()
    age = pd.Timestamp(now) - latest
    assert age.min() > RECENT_SNAPSHOT_AGE - pd.Timedelta(days=1)
    assert age.max() <= RECENT_SNAPSHOT_AGE  # within the activity view's 45-day TTL
