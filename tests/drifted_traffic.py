"""Rows for the retraining-trigger tests (tests/apiserver's and tests/kfp's): churn features as the
models were trained on them, and the same rows with the charges x2.5, a drift the model servers'
monitors flag within a few evaluations."""

from __future__ import annotations

import pandas as pd

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn

CHARGES = ("monthly_charges", "total_charges")


def churn_features(rows: int, seed: int = 21) -> pd.DataFrame:
    return generate_churn(rows, seed=seed).drop(columns=[CHURN_SCHEMA.target])


def raise_charges(df: pd.DataFrame, factor: float = 2.5) -> pd.DataFrame:
    shifted = df.copy()
    for col in CHARGES:
        shifted[col] = (shifted[col] * factor).round(2)
    return shifted
