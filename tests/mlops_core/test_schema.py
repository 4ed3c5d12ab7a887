"""The feature schema: JSON round trip, inference and frame coercion."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.schema import FeatureSchema, SchemaError, infer_schema


def test_round_trip_through_json_and_a_file(tmp_path: Path) -> None:
    assert FeatureSchema.from_json(CHURN_SCHEMA.to_json()) == CHURN_SCHEMA
    CHURN_SCHEMA.save(str(tmp_path / "schema.json"))
    loaded = FeatureSchema.load(str(tmp_path / "schema.json"))
    assert loaded == CHURN_SCHEMA
    assert loaded.feature("region").invariant


def test_inferred_schema_round_trips_and_fits_its_data(tmp_path: Path) -> None:
    df = generate_churn(500, seed=2)
    schema = infer_schema(df, "churned", name="mine")
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
        infer_schema(generate_churn(10), "nope")
