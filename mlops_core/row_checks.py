"""Row-level schema checks for tables (batch scoring): the serving validator's rules, per row.

The rules are the ones `serving.request_validation.RequestValidator` applies to a request: a
numeric feature takes a number (null/NaN only when the feature is nullable, never infinity); a
categorical feature takes a string (null only when nullable) from the schema's categories, unless
the unknown-category policy is "unseen". A request fails as a whole on its first bad value; a table
keeps its good rows, and each bad row gets every reason it fails (`"; "`-joined), so it can be
written aside instead of being dropped silently. Vectorised over columns: no per-row Python except
for the rows that fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import pandas as pd

from mlops_core.schema import Feature, FeatureSchema, SchemaError

UnknownCategoryPolicy = Literal["reject", "unseen"]
UNKNOWN_CATEGORY_POLICIES: tuple[str, ...] = get_args(UnknownCategoryPolicy)


@dataclass(frozen=True)
class CheckedRows:
    """A table's feature columns as the model takes them, and which rows failed and why."""

    columns: list[np.ndarray]  # schema order: float64 (NaN = missing) or object (str | None)
    reasons: np.ndarray  # object, one per row: None for a good row, else the reasons

    @property
    def good(self) -> np.ndarray:
        return np.equal(self.reasons, None)


def _numeric(f: Feature, raw: pd.Series) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    failures: list[tuple[np.ndarray, str]] = []
    if pd.api.types.is_bool_dtype(raw) or not pd.api.types.is_numeric_dtype(raw):
        parsed = pd.to_numeric(raw, errors="coerce")
        present = raw.notna().to_numpy()
        if pd.api.types.is_bool_dtype(raw):
            not_number = present
        else:
            not_number = present & parsed.isna().to_numpy()
        failures.append((not_number, f"feature '{f.name}': expected a number"))
        raw = parsed
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    failures.append((np.isinf(values), f"feature '{f.name}': infinite values are not allowed"))
    if not f.nullable:
        missing = np.isnan(values)
        if failures[0][1].endswith("a number"):
            missing &= ~failures[0][0]  # an unparsable value is reported as such, not as missing
        failures.append((missing, f"feature '{f.name}' is required, got null"))
    return values, failures


def _categorical(
    f: Feature, raw: pd.Series, policy: str
) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    present = raw.notna().to_numpy()
    values = raw.to_numpy(dtype=object, copy=True)
    values[~present] = None  # NaN / pd.NA -> None, as the serving validator's columns
    failures: list[tuple[np.ndarray, str]] = []
    if pd.api.types.infer_dtype(raw, skipna=True) in ("string", "empty"):
        is_str = np.ones(len(values), dtype=bool)  # the usual case, checked in C
    else:
        is_str = np.fromiter((type(v) is str for v in values), bool, len(values))
    failures.append((present & ~is_str, f"feature '{f.name}': expected a string category"))
    if not f.nullable:
        failures.append((~present, f"feature '{f.name}' is required, got null"))
    if policy == "reject":
        known = raw.isin(list(f.categories)).to_numpy()
        failures.append(
            (present & is_str & ~known, f"feature '{f.name}': unknown category (not in schema)")
        )
    return values, failures


def check_rows(
    frame: pd.DataFrame, schema: FeatureSchema, *, unknown_category: str = "reject"
) -> CheckedRows:
    """The feature columns of `frame` in schema order, with a reason for every row that fails."""
    if unknown_category not in UNKNOWN_CATEGORY_POLICIES:
        raise SchemaError(
            f"unknown_category must be one of {list(UNKNOWN_CATEGORY_POLICIES)}, "
            f"got {unknown_category!r}"
        )
    missing = [n for n in schema.feature_names if n not in frame.columns]
    if missing:
        raise SchemaError(
            f"the data lacks feature column(s) {missing}; the model's features are "
            f"{schema.feature_names}"
        )
    columns: list[np.ndarray] = []
    failures: list[tuple[np.ndarray, str, pd.Series]] = []
    for f in schema.features:
        raw = frame[f.name]
        if f.is_numeric:
            values, fails = _numeric(f, raw)
        else:
            values, fails = _categorical(f, raw, unknown_category)
        columns.append(values)
        failures.extend((mask, message, raw) for mask, message in fails)
    reasons = np.full(len(frame), None, dtype=object)
    for mask, message, raw in failures:
        for i in np.flatnonzero(mask):
            text = f"{message}, got {raw.iloc[i]!r}" if "got" not in message else message
            reasons[i] = text if reasons[i] is None else f"{reasons[i]}; {text}"
    return CheckedRows(columns=columns, reasons=reasons)


def rows_array(columns: list[np.ndarray]) -> np.ndarray:
    """Columns as the (rows, features) object array the Pipeline takes (`model_input`'s shape)."""
    n = len(columns[0]) if columns else 0
    out = np.empty((n, len(columns)), dtype=object)
    for j, col in enumerate(columns):
        out[:, j] = col
    return out
