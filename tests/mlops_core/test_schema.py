"""The feature schema: JSON round trip, inference and frame coercion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_core.cars_data import generate_cars
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.schema import FeatureSchema, SchemaError, identifier_columns, infer_schema


def test_round_trip_through_json_and_a_file(tmp_path: Path) -> None:
    assert FeatureSchema.from_json(CHURN_SCHEMA.to_json()) == CHURN_SCHEMA
    CHURN_SCHEMA.save(str(tmp_path / "schema.json"))
    loaded = FeatureSchema.load(str(tmp_path / "schema.json"))
    assert loaded == CHURN_SCHEMA
    assert loaded.feature("region").invariant


def test_inferred_schema_round_trips_and_fits_its_data(tmp_path: Path) -> None:
    df = generate_churn(500, seed=2)
    schema = infer_schema(df, "churned", name="mine", max_categories=50)
    assert FeatureSchema.from_json(schema.to_json()) == schema
    assert schema.feature_names == CHURN_SCHEMA.feature_names
    assert schema.feature("age").min >= 18 and schema.feature("age").max <= 95
    assert schema.feature("internet_service").kind == "categorical"


def test_bad_documents_and_frames_are_named() -> None:
    with pytest.raises(SchemaError, match="not a feature schema"):
        FeatureSchema.from_dict({"features": []})
    with pytest.raises(SchemaError, match=r"lacks feature columns \['region'\]"):
        CHURN_SCHEMA.coerce_frame(generate_churn(10).drop(columns=["region"]))
    with pytest.raises(SchemaError, match="target column 'nope'"):
        infer_schema(generate_churn(10), "nope", max_categories=50)


def test_identifier_columns_are_found_with_their_reason() -> None:
    cars = generate_cars()
    found = identifier_columns(cars, "mpg", max_categories=50)
    assert set(found) == {"car_id", "name"}
    distinct = cars["name"].nunique()
    assert found["name"] == (
        f"an identifier: {distinct} distinct text values in 398 rows "
        f"(--max-categories {distinct} keeps it as a category)"
    )
    assert found["car_id"] == "an identifier: a different integer on each of its 398 rows"
    # Allowed as many categories as it has, the name is a category, not an identifier.
    assert "name" not in identifier_columns(cars, "mpg", max_categories=distinct)

    rng = np.random.default_rng(0)
    ordinary = pd.DataFrame(
        {
            "state": rng.choice([f"s{i}" for i in range(60)], 2000),  # 60 values, each many rows
            "income": rng.integers(20_000, 200_000, 2000),  # integers, unordered, repeats
            "shuffled_key": rng.permutation(np.arange(10**6, 10**6 + 2000) * 7),  # gaps, unsorted
            "y": rng.integers(0, 2, 2000),
        }
    )
    assert identifier_columns(ordinary, "y", max_categories=50) == {}


def test_a_many_valued_column_that_is_no_identifier_is_refused_with_both_ways_out() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"state": rng.choice([f"s{i}" for i in range(60)], 2000), "y": 1})
    with pytest.raises(SchemaError) as e:
        infer_schema(df, "y", max_categories=50)
    assert str(e.value) == (
        "column 'state' has 60 distinct values (limit 50); leave it out with --drop state "
        "or keep it as a category with --max-categories 60"
    )
    assert infer_schema(df, "y", max_categories=60).feature("state").kind == "categorical"
