"""scikit-learn's bundled data sets written as a user would bring them: CSV files whose label
column holds strings (or numbers, for regression), with no schema."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

from mlops_core.schema import FeatureSchema, infer_schema
from mlops_core.target import settle_target

# name -> (loader, task, target column, how the label is spelled)
BUNDLED = {
    "breast_cancer": (datasets.load_breast_cancer, "binary", "diagnosis"),
    "iris": (datasets.load_iris, "multiclass", "species"),
    "wine": (datasets.load_wine, "multiclass", "cultivar"),
    "diabetes": (datasets.load_diabetes, "regression", "progression"),
}


def bundled_frame(name: str) -> tuple[pd.DataFrame, str, str]:
    """The data set as a frame with a string label (classification) and plain column names."""
    loader, task, target = BUNDLED[name]
    data = loader(as_frame=True)
    df = data.frame.rename(columns=lambda c: str(c).replace(" ", "_").replace("/", "_"))
    y = df.pop("target")
    if task == "regression":
        df[target] = y.astype(float)
    elif name == "breast_cancer":
        # scikit-learn's 0 is malignant; spelled Yes/No the way most real data stores an outcome
        df[target] = np.where(y == 0, "Yes", "No")
    else:
        df[target] = [str(data.target_names[i]) for i in y]
    return df, task, target


def write_bundled_csv(name: str, folder: Path) -> tuple[Path, str, str]:
    df, task, target = bundled_frame(name)
    path = folder / f"{name}.csv"
    df.to_csv(path, index=False)
    return path, task, target


def market_frame(rows: int = 1250, seed: int = 0) -> pd.DataFrame:
    """A stock-market table shaped like ISLR's Smarket: five lagged returns, volume, and today's
    return `Today`, from which the label `Direction` (Up if Today > 0) is made: a target leak."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, 1.1, rows + 5)
    df = pd.DataFrame({f"Lag{k}": returns[5 - k : 5 - k + rows].round(3) for k in range(1, 6)})
    df["Volume"] = rng.gamma(9.0, 0.16, rows).round(4)
    df["Today"] = returns[5:].round(3)
    df["Direction"] = np.where(df["Today"] > 0, "Up", "Down")
    return df


def settled_schema(df: pd.DataFrame, target: str) -> FeatureSchema:
    """The schema ingest settles for `df` with no schema given: inferred, task and classes decided."""
    spec = settle_target(df[target], target=target)
    schema = infer_schema(df, target, max_categories=50)
    return replace(schema, task=spec.task, classes=spec.classes)
