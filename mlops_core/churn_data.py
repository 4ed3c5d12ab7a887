"""The project's own data set: customer churn for a subscription business, with drift scenarios.

The label comes from a non-linear model of the features (interactions, thresholds, a saturating
effect of engagement), so linear and tree models differ in quality. Every scenario is a deliberate
change of the data-generating process, so the validate step and the live drift monitor can be
checked against a known truth:

- ``clean``: the reference process.
- ``covariate_shift``: a price rise: monthly charges up ~30%, nothing else changes in the label model.
- ``new_category``: a payment method the model never saw (``crypto``) takes a share of customers.
- ``concept_drift``: the effect of support tickets on churn reverses (same inputs, new labels).
- ``label_shift``: the base churn rate rises sharply (a competitor's offer).
- ``broken``: bad data: nulls in a required column, out-of-range values, wrong types.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd

from mlops_core.errors import InvalidInputError
from mlops_core.schema import Feature, FeatureSchema

Scenario = Literal[
    "clean", "covariate_shift", "new_category", "concept_drift", "label_shift", "broken"
]
SCENARIOS: tuple[str, ...] = get_args(Scenario)

CONTRACTS = ("month-to-month", "one-year", "two-year")
PAYMENT_METHODS = ("bank_transfer", "credit_card", "electronic_check", "mailed_check")
INTERNET_SERVICES = ("dsl", "fiber", "none")
REGIONS = ("east", "north", "south", "west")

CHURN_SCHEMA = FeatureSchema(
    name="churn",
    target="churned",
    features=(
        Feature(
            "tenure_months",
            "numeric",
            "int",
            0,
            72,
            nullable=False,
            max_missing_rate=0.0,
            description="months since the customer subscribed",
        ),
        Feature(
            "monthly_charges",
            "numeric",
            "float",
            10,
            250,
            nullable=False,
            max_missing_rate=0.0,
            description="current monthly bill",
        ),
        Feature(
            "total_charges",
            "numeric",
            "float",
            0,
            20000,
            max_missing_rate=0.05,
            description="lifetime billed amount; missing for some new accounts",
        ),
        Feature("age", "numeric", "int", 18, 95, max_missing_rate=0.05),
        Feature(
            "support_tickets_90d", "numeric", "int", 0, 30, nullable=False, max_missing_rate=0.0
        ),
        Feature("logins_30d", "numeric", "int", 0, 300, max_missing_rate=0.05),
        Feature(
            "avg_session_minutes",
            "numeric",
            "float",
            0,
            600,
            max_missing_rate=0.15,
            description="missing when the app has no telemetry consent",
        ),
        Feature(
            "contract",
            "categorical",
            "str",
            categories=CONTRACTS,
            nullable=False,
            max_missing_rate=0.0,
        ),
        Feature(
            "payment_method",
            "categorical",
            "str",
            categories=PAYMENT_METHODS,
            max_missing_rate=0.05,
        ),
        Feature(
            "internet_service",
            "categorical",
            "str",
            categories=INTERNET_SERVICES,
            max_missing_rate=0.05,
        ),
        Feature(
            "region",
            "categorical",
            "str",
            categories=REGIONS,
            max_missing_rate=0.05,
            invariant=True,
            description="sales region; churn does not depend on it",
        ),
    ),
)


class DataGenerationError(InvalidInputError):
    """The generator was asked for data it cannot make (an unknown scenario, no rows)."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    p: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return p


def generate_churn(rows: int, *, scenario: str = "clean", seed: int = 0) -> pd.DataFrame:
    """Generate `rows` customers under `scenario`; the same (rows, scenario, seed) gives the same frame."""
    if scenario not in SCENARIOS:
        raise DataGenerationError(f"unknown scenario {scenario!r}; choose one of {list(SCENARIOS)}")
    if rows < 1:
        raise DataGenerationError(f"rows must be at least 1, got {rows}")
    rng = np.random.default_rng(seed)

    contract = rng.choice(CONTRACTS, size=rows, p=[0.55, 0.25, 0.20])
    tenure_scale = np.select([contract == "month-to-month", contract == "one-year"], [14, 30], 45)
    tenure = np.clip(rng.exponential(tenure_scale), 0, 72).round()
    internet = rng.choice(INTERNET_SERVICES, size=rows, p=[0.35, 0.45, 0.20])
    base_price = np.select([internet == "fiber", internet == "dsl"], [85.0, 55.0], 25.0)
    monthly = np.clip(base_price + rng.normal(0, 12, rows), 10, 180)
    if scenario == "covariate_shift":
        monthly = np.clip(monthly * 1.3, 10, 240)
    total = np.clip(monthly * tenure * rng.uniform(0.9, 1.05, rows), 0, 20000)
    age = np.clip(rng.normal(45, 14, rows), 18, 95).round()
    tickets = rng.poisson(np.where(internet == "fiber", 1.6, 0.9))
    tickets = np.clip(tickets, 0, 30)
    logins = np.clip(rng.gamma(2.0, 12.0, rows), 0, 300).round()
    session = np.clip(rng.lognormal(2.6, 0.6, rows), 0, 600)
    payment_p = [0.22, 0.30, 0.33, 0.15]
    payment = rng.choice(PAYMENT_METHODS, size=rows, p=payment_p).astype(object)
    if scenario == "new_category":
        payment[rng.random(rows) < 0.25] = "crypto"
    region = rng.choice(REGIONS, size=rows)

    # Label model: non-linear in tenure (early-life churn), price interacting with contract,
    # tickets with a threshold, engagement saturating.
    z = (
        -1.2
        + 1.6 * np.exp(-tenure / 8.0)
        + np.where(contract == "month-to-month", 0.9, np.where(contract == "one-year", -0.6, -1.5))
        + 0.025 * (monthly - 65) * np.where(contract == "month-to-month", 1.0, 0.4)
        - 1.1 * np.tanh(logins / 25.0)
        + np.where(payment == "electronic_check", 0.55, 0.0)
        + np.where(internet == "fiber", 0.3, 0.0)
        - 0.008 * (age - 45)
    )
    ticket_effect = 0.45 * np.maximum(tickets - 2, 0)
    z = z - ticket_effect if scenario == "concept_drift" else z + ticket_effect
    if scenario == "label_shift":
        z = z + 1.5
    churned = (rng.random(rows) < _sigmoid(z)).astype(int)

    df = pd.DataFrame(
        {
            "tenure_months": tenure.astype(int),
            "monthly_charges": monthly.round(2),
            "total_charges": total.round(2),
            "age": age.astype(int),
            "support_tickets_90d": tickets.astype(int),
            "logins_30d": logins.astype(float),
            "avg_session_minutes": session.round(2),
            "contract": contract.astype(object),
            "payment_method": payment,
            "internet_service": internet.astype(object),
            "region": region.astype(object),
            "churned": churned,
        }
    )
    # Realistic missingness: new accounts lack total charges; telemetry consent varies.
    df.loc[(df["tenure_months"] == 0) & (rng.random(rows) < 0.7), "total_charges"] = np.nan
    df.loc[rng.random(rows) < 0.10, "avg_session_minutes"] = np.nan
    df.loc[rng.random(rows) < 0.02, "logins_30d"] = np.nan
    df.loc[rng.random(rows) < 0.01, "payment_method"] = None
    df.loc[rng.random(rows) < 0.01, "age"] = np.nan

    if scenario == "broken":
        df = _break(df, rng)
    return df


def _break(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Corrupt a frame the way real pipelines get corrupted."""
    df = df.copy()
    n = len(df)
    k = max(1, n // 10)
    df.loc[rng.choice(n, size=k, replace=False), "tenure_months"] = np.nan  # required column
    df["age"] = df["age"].astype(object)
    df.loc[rng.choice(n, size=k, replace=False), "age"] = -7  # out of range
    df["monthly_charges"] = df["monthly_charges"].astype(object)
    df.loc[rng.choice(n, size=k, replace=False), "monthly_charges"] = "n/a"  # wrong type
    return df
