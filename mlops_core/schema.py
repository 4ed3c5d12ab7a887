"""The feature schema: the single source of truth for column names, types, ranges and categories.

Training, validation, the KFP components and the predictor all read a `FeatureSchema`; none of them
hard-codes a column. A schema round-trips through JSON so it travels with every registered model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd

from mlops_core.errors import MlopsError
from mlops_core.target import Task, encode_labels

FeatureKind = Literal["numeric", "categorical"]


class SchemaError(MlopsError):
    """A schema document or a data frame does not fit the expected shape."""


@dataclass(frozen=True)
class Feature:
    """One input column.

    `invariant` marks a feature the label does not depend on: the invariance test checks that
    changing it does not move predictions beyond a tolerance.
    """

    name: str
    kind: FeatureKind
    dtype: Literal["int", "float", "str"] = "float"
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    nullable: bool = True
    max_missing_rate: float = 0.2
    invariant: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind == "categorical" and not self.categories:
            raise SchemaError(f"categorical feature {self.name!r} needs at least one category")
        if self.kind == "numeric" and self.categories:
            raise SchemaError(f"numeric feature {self.name!r} cannot list categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SchemaError(f"feature {self.name!r}: min {self.min} is above max {self.max}")

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered features plus the target column, its task and its label encoding.

    `classes` lists the user's labels in class-index order (binary: negative, positive); a binary
    schema without them (the churn data) has the labels 0 and 1. Regression has no classes.
    """

    features: tuple[Feature, ...]
    target: str
    name: str = "dataset"
    positive_label: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    task: Task = "binary"
    classes: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.features:
            raise SchemaError(f"the schema lists no features (target {self.target!r} alone)")
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise SchemaError(f"duplicate feature names: {duplicates}")
        if self.target in names:
            raise SchemaError(f"target {self.target!r} is also listed as a feature")

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def label_classes(self) -> tuple[Any, ...]:
        """The labels in class-index order (binary without declared classes: 0, 1)."""
        if self.task == "regression":
            return ()
        return self.classes or (0, 1)

    def encode_target(self, y: pd.Series) -> np.ndarray:
        """The model's target: class indices for a classifier, floats for regression."""
        if self.task == "regression":
            values: np.ndarray = pd.to_numeric(y, errors="raise").to_numpy(dtype=float)
            return values
        return encode_labels(y, self.label_classes, target=self.target)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[Feature]:
        return [f for f in self.features if f.is_numeric]

    @property
    def categorical_features(self) -> list[Feature]:
        return [f for f in self.features if not f.is_numeric]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"unknown feature {name!r}; the schema has {self.feature_names}")

    def index_of(self, name: str) -> int:
        return self.feature_names.index(self.feature(name).name)

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        for f in doc["features"]:
            f["categories"] = list(f["categories"])
        doc["classes"] = list(doc["classes"])
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FeatureSchema:
        try:
            features = tuple(
                Feature(**{**f, "categories": tuple(f.get("categories", ()))})
                for f in doc["features"]
            )
            return cls(
                features=features,
                target=doc["target"],
                name=doc.get("name", "dataset"),
                positive_label=doc.get("positive_label", 1),
                extra=doc.get("extra", {}),
                task=doc.get("task", "binary"),
                classes=tuple(doc.get("classes", ())),
            )
        except (KeyError, TypeError) as e:
            raise SchemaError(f"not a feature schema document: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> FeatureSchema:
        return cls.from_dict(json.loads(text))

    def save(self, path: str) -> None:
        with fsspec.open(path, "w") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> FeatureSchema:
        with fsspec.open(path, "r") as fh:
            return cls.from_json(fh.read())

    # --- frames --------------------------------------------------------------------------------
    def coerce_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Return the feature columns in schema order with the schema's dtypes.

        Numeric values that do not parse become NaN here; validation reports them, this only
        shapes the frame the model sees.
        """
        missing = [n for n in self.feature_names if n not in df.columns]
        if missing:
            raise SchemaError(f"data lacks feature columns {missing}")
        out = {}
        for f in self.features:
            col = df[f.name]
            if f.is_numeric:
                out[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
            else:
                out[f.name] = col.astype("object").where(col.notna(), None)
        return pd.DataFrame(out, index=df.index)


# A text column with more distinct values than max_categories is an identifier (a name, a key)
# when at least this share of its present values are distinct; else it is refused, not guessed.
IDENTIFIER_DISTINCT_SHARE = 0.5


def identifier_columns(df: pd.DataFrame, target: str, *, max_categories: int) -> dict[str, str]:
    """Columns that name a row rather than describe it, each with the reason in words.

    - text with more than `max_categories` distinct values, at least IDENTIFIER_DISTINCT_SHARE
      of its present values distinct (a car's name, an e-mail address);
    - integers, a different one on every row, that count up in file order or are exactly the
      numbers first..last (a row number or a sequential key).
    """
    found: dict[str, str] = {}
    for col in df.columns:
        if col == target:
            continue
        s = df[col]
        present = s.dropna()
        if not len(present):
            continue
        distinct = int(present.nunique())
        if _is_text(s):
            share = distinct / len(present)
            if distinct > max_categories and share >= IDENTIFIER_DISTINCT_SHARE:
                found[str(col)] = (
                    f"an identifier: {distinct} distinct text values in {len(present)} rows "
                    f"(--max-categories {distinct} keeps it as a category)"
                )
        elif _is_row_key(s, distinct):
            found[str(col)] = f"an identifier: a different integer on each of its {len(s)} rows"
    return found


def _is_text(s: pd.Series) -> bool:
    return not pd.api.types.is_bool_dtype(s) and not pd.api.types.is_numeric_dtype(s)


def _is_row_key(s: pd.Series, distinct: int) -> bool:
    if not pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return False
    if len(s) < 3 or distinct != len(s):  # every row its own value, none missing
        return False
    values = s.to_numpy()
    consecutive = int(values.max()) - int(values.min()) + 1 == len(s)
    return consecutive or bool(s.is_monotonic_increasing)


def infer_schema(
    df: pd.DataFrame,
    target: str,
    *,
    max_categories: int,
    name: str = "dataset",
    missing_slack: float = 0.05,
) -> FeatureSchema:
    """Infer a schema from a data frame a user brings.

    Numeric columns get their observed range; object/bool columns or numeric columns with few
    distinct values stay numeric (ordinal) unless they are strings. A string column with more than
    `max_categories` distinct values is refused: set identifiers aside first
    (`identifier_columns`), and drop or allow (a higher `max_categories`) the rest.
    """
    if target not in df.columns:
        raise SchemaError(f"target column {target!r} not in data; columns are {list(df.columns)}")
    features = []
    for col in df.columns:
        if col == target:
            continue
        s = df[col]
        missing_rate = float(s.isna().mean())
        nullable = missing_rate > 0
        max_missing = min(1.0, round(missing_rate + missing_slack, 4))
        if pd.api.types.is_bool_dtype(s):
            s = s.astype("Int64")
        if pd.api.types.is_numeric_dtype(s):
            values = s.dropna()
            is_int = bool(len(values)) and bool(np.all(np.mod(values, 1) == 0))
            features.append(
                Feature(
                    name=str(col),
                    kind="numeric",
                    dtype="int" if is_int else "float",
                    min=float(values.min()) if len(values) else None,
                    max=float(values.max()) if len(values) else None,
                    nullable=nullable,
                    max_missing_rate=max_missing,
                )
            )
        else:
            cats = sorted(str(v) for v in s.dropna().unique())
            if len(cats) > max_categories:
                raise SchemaError(
                    f"column {col!r} has {len(cats)} distinct values (limit {max_categories}); "
                    f"leave it out with --drop {col} or keep it as a category with "
                    f"--max-categories {len(cats)}"
                )
            if not cats:
                raise SchemaError(f"column {col!r} is entirely empty; drop it before ingesting")
            features.append(
                Feature(
                    name=str(col),
                    kind="categorical",
                    dtype="str",
                    categories=tuple(cats),
                    nullable=nullable,
                    max_missing_rate=max_missing,
                )
            )
    return FeatureSchema(features=tuple(features), target=target, name=name)
