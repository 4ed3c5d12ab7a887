"""Checks the feature store tests share (tests/images on moto and Redis, tests/kind on the
cluster): a feature server's raw answer, the training path's values as of now, and the two
compared value by value."""

from __future__ import annotations

import math

import httpx
import pandas as pd
import pytest

from components.feature_definitions import FEATURE_SERVICE, feature_names
from components.feature_store import FeatureStoreConfig, training_set
from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP


def online_rows(url: str, ids: list[int]) -> pd.DataFrame:
    """Feast's feature server's answer for `ids` (its own HTTP API, not the model server's
    client), one row per customer indexed by the key, in the service's feature order."""
    r = httpx.post(
        f"{url}/get-online-features",
        json={"feature_service": FEATURE_SERVICE, "entities": {ENTITY_KEY: ids}},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    names = body["metadata"]["feature_names"]
    frame = pd.DataFrame({n: v["values"] for n, v in zip(names, body["results"], strict=True)})
    return frame.set_index(ENTITY_KEY).loc[ids, feature_names()]


def as_of_now(config: FeatureStoreConfig, ids: list[int]) -> pd.DataFrame:
    """The training path's values for `ids` as of now (with the label column the call needs)."""
    labels = pd.DataFrame(
        {ENTITY_KEY: ids, EVENT_TIMESTAMP: pd.Timestamp.now(tz="UTC"), "churned": 0}
    )
    return training_set(config, labels).frame.set_index(ENTITY_KEY).loc[ids, feature_names()]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def assert_same_values(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Value by value: equal (numbers as floats), or missing on both sides (None or NaN). Each
    customer must have values on the training path: ids the store does not hold would compare
    missing with missing and prove nothing."""
    assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
    for customer in want.index:
        known = [c for c in want.columns if not _missing(want.loc[customer, c])]
        assert known, f"customer {customer} has no feature values on the training path"
        for column in want.columns:
            a, b = got.loc[customer, column], want.loc[customer, column]
            if _missing(a) or _missing(b):
                assert _missing(a) and _missing(b), (customer, column, a, b)
            elif isinstance(b, str):
                assert a == b, (customer, column, a, b)
            else:
                assert float(a) == pytest.approx(float(b)), (customer, column, a, b)
