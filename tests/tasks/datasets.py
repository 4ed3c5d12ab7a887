"""scikit-learn's bundled data sets written as a user would bring them: CSV files whose label
column holds strings (or numbers, for regression), with no schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

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
