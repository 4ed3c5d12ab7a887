"""The cars table: reproducible, with the identifiers and the leak it is there to show."""

from __future__ import annotations

import pandas as pd
import pytest

from mlops_core.cars_data import LITERS_PER_100KM_PER_MPG, generate_cars


def test_the_same_seed_gives_the_same_table() -> None:
    pd.testing.assert_frame_equal(generate_cars(seed=4), generate_cars(seed=4))
    assert not generate_cars(seed=4).equals(generate_cars(seed=5))


def test_its_columns_are_what_the_docs_say() -> None:
    df = generate_cars()
    assert len(df) == 398 and df["car_id"].tolist() == list(range(1, 399))
    assert df["name"].nunique() > 0.5 * len(df)  # almost every car its own name
    assert df["horsepower"].isna().any() and not df["mpg"].isna().any()
    assert set(df["origin"]) == {"usa", "europe", "japan"}
    ratio = df["liters_per_100km"] * df["mpg"] / LITERS_PER_100KM_PER_MPG
    assert ratio.between(0.99, 1.01).all()  # the target in other units


def test_rows_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rows must be at least 1"):
        generate_cars(0)
