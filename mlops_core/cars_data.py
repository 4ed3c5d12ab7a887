"""A car fuel-economy table shaped like the public ones a new user brings first (`mpg` of a few
hundred cars by make and model), generated here so examples and tests need no download.

Its columns are the ones that trip a first training run on such data:

- `car_id`: a row number, and `name`: a make and model on almost every row: identifiers, which
  ingest sets aside;
- `horsepower`: missing on a few rows, as in the public data;
- `liters_per_100km`: the target in other units (235.2 / mpg), recorded with the outcome: target
  leakage, which validation reports.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAKES = {
    "usa": ("amc", "buick", "chevrolet", "dodge", "ford", "mercury", "plymouth", "pontiac"),
    "europe": ("audi", "bmw", "fiat", "peugeot", "renault", "saab", "volkswagen", "volvo"),
    "japan": ("datsun", "honda", "mazda", "subaru", "toyota"),
}
MODELS = (
    "coupe", "wagon", "sedan", "sport", "custom", "deluxe", "classic", "special", "royal",
    "brougham", "gt", "limited", "rally", "sprint", "ranger", "monarch", "corsair", "vista",
)  # fmt: skip
ORIGIN_SHARE = {"usa": 0.62, "europe": 0.18, "japan": 0.20}
LITERS_PER_100KM_PER_MPG = 235.215  # 100 km / 1 mile * 1 US gallon / 1 litre


def generate_cars(rows: int = 398, *, seed: int = 0) -> pd.DataFrame:
    """`rows` cars with their fuel economy (`mpg`, the target); the same (rows, seed), the same
    frame."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)
    origin = rng.choice(list(ORIGIN_SHARE), size=rows, p=list(ORIGIN_SHARE.values()))
    cylinders = np.where(
        origin == "usa",
        rng.choice([4, 6, 8], size=rows, p=[0.35, 0.3, 0.35]),
        rng.choice([4, 6], size=rows, p=[0.85, 0.15]),
    )
    displacement = np.round(cylinders * rng.normal(45, 6, rows) * np.where(cylinders == 8, 1.2, 1))
    horsepower = np.round(0.45 * displacement + rng.normal(25, 8, rows)).astype(float)
    weight = np.round(900 + 7 * displacement + rng.normal(0, 180, rows))
    acceleration = np.round(np.clip(24 - horsepower / 14 + rng.normal(0, 1.2, rows), 8, 25), 1)
    model_year = rng.integers(70, 83, size=rows)
    mpg = np.clip(
        48
        - 0.0062 * weight
        - 0.05 * horsepower
        + 0.75 * (model_year - 70)
        + np.select([origin == "japan", origin == "europe"], [2.0, 1.0], 0.0)
        + rng.normal(0, 2.2, rows),
        9,
        47,
    ).round(1)
    make = [rng.choice(MAKES[o]) for o in origin]
    name = [
        f"{m} {rng.choice(MODELS)} {rng.integers(1, 6) * 100}" for m in make
    ]  # a model number: almost every car its own name
    horsepower[rng.random(rows) < 0.015] = np.nan  # unknown for a few cars, as in public data
    return pd.DataFrame(
        {
            "car_id": np.arange(1, rows + 1),
            "name": name,
            "cylinders": cylinders.astype(int),
            "displacement": displacement,
            "horsepower": horsepower,
            "weight": weight.astype(int),
            "acceleration": acceleration,
            "model_year": model_year.astype(int),
            "origin": origin.astype(object),
            "liters_per_100km": (LITERS_PER_100KM_PER_MPG / mpg).round(2),
            "mpg": mpg,
        }
    )
