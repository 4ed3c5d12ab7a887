"""Row-level schema checks for tables (batch scoring): the serving validator's rules, per row.

The rules are the ones `serving.request_validation.RequestValidator` applies to a request: a
numeric feature takes a number (null/NaN only when the feature is nullable, never infinity); a
categorical feature takes a string (null only when nullable) from the schema's categories, unless
the unknown-category policy is "unseen". A request fails as a whole on its first bad value; a table
keeps its good rows, and each bad row gets every reason it fails (`"; "`-joined), so it can be
written aside instead of being dropped silently. Vectorised over columns: no per-row Python except
for the rows that fail.

Two entry points: `check_rows` for a pandas frame, and `check_table` for an Arrow record batch
(batch scoring). `check_table` checks the common column types in Arrow/NumPy without a pandas
round trip: a numeric column is cast to float64 once; a string column is checked on its
dictionary (Parquet already stores it dictionary-encoded), so each distinct value is looked at
once, not each row, and the column comes back as a `CodedColumn`. Any other type (text in a
numeric column, as CSV gives, booleans, mixed objects) goes through the pandas rules for that
column only, so both entry points accept and reject the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops_core.schema import Feature, FeatureSchema, SchemaError

UnknownCategoryPolicy = Literal["reject", "unseen"]
UNKNOWN_CATEGORY_POLICIES: tuple[str, ...] = get_args(UnknownCategoryPolicy)


@dataclass(frozen=True)
class CodedColumn:
    """A categorical column as codes into its distinct values: no Python object per row.

    `codes[i]` indexes `values`; -1 is a missing value (None). The compiled preprocessing encodes
    it by looking each distinct value up once (`components.fast_inference`)."""

    codes: np.ndarray  # integer, one per row; -1 = missing
    values: tuple[Any, ...]  # the distinct non-missing values

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows: Any) -> CodedColumn:
        return CodedColumn(self.codes[rows], self.values)

    def to_objects(self) -> np.ndarray:
        """The column as the object array (str | None) the serving validator produces."""
        table = np.empty(len(self.values) + 1, dtype=object)
        table[: len(self.values)] = list(self.values)
        picked: np.ndarray = table[self.codes]  # -1 picks the trailing None
        return picked


Column = np.ndarray | CodedColumn


@dataclass(frozen=True)
class CheckedRows:
    """A table's feature columns as the model takes them, and which rows failed and why."""

    # schema order: float64 (NaN = missing), object (str | None) or a CodedColumn
    columns: list[Column]
    reasons: np.ndarray  # object, one per row: None for a good row, else the reasons
    good_rows: np.ndarray | None = None  # bool per row, when the checker computed it already

    @property
    def good(self) -> np.ndarray:
        if self.good_rows is not None:
            return self.good_rows
        good: np.ndarray = self.reasons == None  # noqa: E711 - element-wise, not identity
        return good


Failure = tuple[np.ndarray, str]  # (rows that fail, message)


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


def _check_policy_and_columns(
    names: list[str], schema: FeatureSchema, unknown_category: str
) -> None:
    if unknown_category not in UNKNOWN_CATEGORY_POLICIES:
        raise SchemaError(
            f"unknown_category must be one of {list(UNKNOWN_CATEGORY_POLICIES)}, "
            f"got {unknown_category!r}"
        )
    missing = [n for n in schema.feature_names if n not in names]
    if missing:
        raise SchemaError(
            f"the data lacks feature column(s) {missing}; the model's features are "
            f"{schema.feature_names}"
        )


def _checked(
    n: int, columns: list[Column], failures: list[tuple[np.ndarray, str, Callable[[int], Any]]]
) -> CheckedRows:
    """Join the failures into one reason per bad row (Python only for the rows that fail)."""
    bad = np.zeros(n, dtype=bool)
    for mask, _, _ in failures:
        bad |= mask
    reasons = np.full(n, None, dtype=object)
    if bad.any():
        for mask, message, raw in failures:
            for i in map(int, np.flatnonzero(mask)):
                text = f"{message}, got {raw(i)!r}" if "got" not in message else message
                reasons[i] = text if reasons[i] is None else f"{reasons[i]}; {text}"
    return CheckedRows(columns=columns, reasons=reasons, good_rows=~bad)


def check_rows(
    frame: pd.DataFrame, schema: FeatureSchema, *, unknown_category: str = "reject"
) -> CheckedRows:
    """The feature columns of `frame` in schema order, with a reason for every row that fails."""
    _check_policy_and_columns(list(frame.columns), schema, unknown_category)
    columns: list[Column] = []
    failures: list[tuple[np.ndarray, str, Callable[[int], Any]]] = []
    for f in schema.features:
        raw = frame[f.name]
        if f.is_numeric:
            values, fails = _numeric(f, raw)
        else:
            values, fails = _categorical(f, raw, unknown_category)
        columns.append(values)
        failures.extend((mask, message, _pandas_value(raw)) for mask, message in fails)
    return _checked(len(frame), columns, failures)


def _pandas_value(raw: pd.Series) -> Callable[[int], Any]:
    # A NumPy scalar as its Python value: a reason reads "got inf", not "got np.float64(inf)".
    return lambda i: v.item() if isinstance(v := raw.iloc[i], np.generic) else v


# --- Arrow: column-wise, no pandas for the common types -----------------------------------------
def _is_number_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t))


def _is_text_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _arrow_numeric(f: Feature, col: pa.Array) -> tuple[np.ndarray, list[Failure]]:
    # A null becomes NaN (missing), as pandas' float conversion does. safe=False: a huge int64
    # rounds to the nearest float64 like NumPy's cast, instead of raising.
    values = pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    failures = [(np.isinf(values), f"feature '{f.name}': infinite values are not allowed")]
    if not f.nullable:
        failures.append((np.isnan(values), f"feature '{f.name}' is required, got null"))
    return values, failures


def _arrow_categorical(f: Feature, col: pa.Array, policy: str) -> tuple[CodedColumn, list[Failure]]:
    coded = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
    values = coded.dictionary.to_pylist()
    codes = pc.fill_null(coded.indices, -1).to_numpy(zero_copy_only=False).astype(np.intp)
    if None in values:  # a dictionary may hold a null value: the row is missing, like a null index
        remap = np.array([-1 if v is None else i for i, v in enumerate(values)] + [-1], np.intp)
        codes = remap[codes]
    present = codes >= 0
    failures: list[Failure] = []
    if not f.nullable:
        failures.append((~present, f"feature '{f.name}' is required, got null"))
    if policy == "reject":
        categories = set(f.categories)
        known = np.array([v in categories for v in values] + [True], dtype=bool)
        failures.append(
            (~known[codes], f"feature '{f.name}': unknown category (not in schema)")  # -1: True
        )
    return CodedColumn(codes, tuple(values)), failures


def check_table(
    batch: pa.RecordBatch, schema: FeatureSchema, *, unknown_category: str = "reject"
) -> CheckedRows:
    """`check_rows` for an Arrow record batch: the same rules and reasons, column-wise in Arrow
    and NumPy for numeric and string columns (categorical features come back as CodedColumn)."""
    _check_policy_and_columns(batch.schema.names, schema, unknown_category)
    columns: list[Column] = []
    failures: list[tuple[np.ndarray, str, Callable[[int], Any]]] = []
    for f in schema.features:
        col = batch.column(f.name)
        values: Column
        if f.is_numeric and _is_number_type(col.type):
            values, fails = _arrow_numeric(f, col)
        elif not f.is_numeric and _is_text_type(col.type):
            values, fails = _arrow_categorical(f, col, unknown_category)
        else:  # another type: pandas' rules for this column (parsing text, rejecting booleans)
            series = col.to_pandas()
            if f.is_numeric:
                values, fails = _numeric(f, series)
            else:
                values, fails = _categorical(f, series, unknown_category)
        columns.append(values)
        failures.extend((mask, message, _arrow_value(col)) for mask, message in fails)
    return _checked(batch.num_rows, columns, failures)


def _arrow_value(col: pa.Array) -> Callable[[int], Any]:
    return lambda i: col[i].as_py()


def rows_array(columns: list[Column]) -> np.ndarray:
    """Columns as the (rows, features) object array the Pipeline takes (`model_input`'s shape)."""
    n = len(columns[0]) if columns else 0
    out = np.empty((n, len(columns)), dtype=object)
    for j, col in enumerate(columns):
        out[:, j] = col.to_objects() if isinstance(col, CodedColumn) else col
    return out
