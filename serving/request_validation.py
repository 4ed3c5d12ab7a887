"""Turn a V1 or V2 request body into the model's input, checking it against the feature schema.

Every request passes through here before the model sees it. The output is what
`components.train.model_input` produces for a frame: an object array in schema order, numeric
columns as floats (NaN for missing), categorical columns as str or None. It is built column by
column straight from the decoded JSON (no DataFrame), because a per-request frame costs more than
the model itself for small batches.

A bad request raises `InvalidRequest` (KServe's `InvalidInput`, so the server answers 400) with a
message naming the field, the row and the problem.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput

from mlops_core.schema import Feature, FeatureSchema
from mlops_core.settings import DEFAULT_MAX_BATCH_ROWS

UnknownCategoryPolicy = Literal["reject", "unseen"]
UNKNOWN_CATEGORY_POLICIES: tuple[str, ...] = get_args(UnknownCategoryPolicy)

NUMERIC_DATATYPES = frozenset(
    {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    }
)
_INTEGER_DATATYPES = frozenset(d for d in NUMERIC_DATATYPES if "INT" in d)
_NUMBER_TYPES = frozenset({int, float, type(None)})
_CATEGORY_TYPES = frozenset({str, type(None)})


class InvalidRequest(InvalidInput):
    """A request that does not fit the model's feature schema (HTTP 400)."""


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's own words ("a string", "an array", ...)."""
    if value is None:
        return "null"
    return _JSON_KINDS.get(type(value), "a number" if isinstance(value, int | float) else "?")


def wrong_body_shape(value: Any, field: str) -> str:
    """The message for a body that is valid JSON but not an object: name what it is instead."""
    return (
        f"request body is valid JSON but {json_kind(value)}; it must be a JSON object with an "
        f"'{field}' list"
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def v2_datatype(feature: Feature) -> str:
    """The Open Inference Protocol datatype a feature is declared with in model metadata."""
    if not feature.is_numeric:
        return "BYTES"
    # Nullable integers travel as FP64 so a missing value can be sent (as null or NaN).
    return "INT64" if feature.dtype == "int" and not feature.nullable else "FP64"


@dataclass(frozen=True)
class RequestLimits:
    max_rows: int = DEFAULT_MAX_BATCH_ROWS
    unknown_category: str = "reject"

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {self.max_rows}")
        if self.unknown_category not in UNKNOWN_CATEGORY_POLICIES:
            raise ValueError(
                f"unknown_category must be one of {list(UNKNOWN_CATEGORY_POLICIES)}, "
                f"got {self.unknown_category!r}"
            )


def _check_integers(name: str, datatype: str, data: list[Any]) -> None:
    """An INT/UINT tensor holds whole numbers: 3.7 (or NaN) in one is a wrong datatype, not a
    value to truncate or pass on as a float. Whole floats (3.0) are accepted."""
    if float not in set(map(type, data)):  # the common case: JSON integers only
        return
    for i, v in enumerate(data):
        if type(v) is float and not v.is_integer():
            raise InvalidRequest(
                f"input '{name}' (row {i}) has datatype {datatype} but holds {v!r}, which is not "
                "a whole number; send FP64 for fractional values"
            )


def _tensor_rows(inp: InferInput) -> int:
    """The rows of a V2 input: shape [rows] or [rows, 1]."""
    shape = list(inp.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 0:
        raise InvalidRequest(f"input '{inp.name}' has shape {shape}; expected [rows] or [rows, 1]")
    return int(shape[0])


def _tensor_data(inp: InferInput, n_rows: int) -> list[Any]:
    """A V2 input's values, one per row (a [rows, 1] tensor may be sent nested)."""
    data = inp.data
    if not isinstance(data, list):
        raise InvalidRequest(f"input '{inp.name}': 'data' must be a JSON list")
    if data and type(data[0]) is list:  # shape [rows, 1] sent nested
        if any(type(v) is not list or len(v) != 1 for v in data):
            raise InvalidRequest(f"input '{inp.name}': nested 'data' must hold one value per row")
        data = [v[0] for v in data]
    if len(data) != n_rows:
        raise InvalidRequest(
            f"input '{inp.name}' declares shape {list(inp.shape)} but holds {len(data)} values"
        )
    return data


def _key_values(name: str, datatype: str, data: list[Any]) -> list[Any]:
    """The entity keys of a V2 key tensor: whole numbers in an INT tensor (3.0 read as 3), or
    strings in a BYTES one; never null (a row without a key has nothing to look up)."""
    ok: tuple[type, ...]
    if datatype in _INTEGER_DATATYPES:
        _check_integers(name, datatype, data)
        expected, ok = "a whole number", (int, float)
    elif datatype == "BYTES":
        expected, ok = "a string", (str,)
    else:
        raise InvalidRequest(
            f"the entity key input '{name}' has datatype {datatype}; send the keys as INT64 "
            "(or BYTES for string keys)"
        )
    for i, v in enumerate(data):
        if type(v) not in ok:
            raise InvalidRequest(
                f"the entity key input '{name}' (row {i}): expected {expected}, got "
                f"{'null' if v is None else _describe(v)}; every row needs a key"
            )
    return [int(v) if type(v) is float else v for v in data]


class RequestValidator:
    """Checks request bodies against one schema; precomputes what the per-request path needs."""

    def __init__(self, schema: FeatureSchema, limits: RequestLimits) -> None:
        self.schema = schema
        self.limits = limits
        self.features = schema.features
        self.names = schema.feature_names
        self.name_set = frozenset(self.names)
        self._values_of = operator.itemgetter(*self.names)  # a row object -> its values in order
        self.allowed = {
            f.name: frozenset(f.categories) for f in schema.features if not f.is_numeric
        }

    # --- V1: {"instances": [row, ...]} -------------------------------------------------------
    def from_v1(self, body: Any) -> np.ndarray:
        if isinstance(body, bytes):
            # KServe leaves a body undecoded when its content-type is not JSON (curl's default
            # form type, text/plain): decode it here rather than refuse a well-formed request.
            # (A str is already decoded: the JSON string body `"hello"`, refused below.)
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise InvalidRequest(f"malformed JSON: {e}") from e
        if not isinstance(body, dict):
            raise InvalidRequest(wrong_body_shape(body, "instances"))
        if "instances" not in body:
            raise InvalidRequest(
                "request body lacks the 'instances' field (a list of rows: objects keyed by "
                "feature name, or lists in schema order)"
            )
        rows = body["instances"]
        if not isinstance(rows, list):
            raise InvalidRequest(f"'instances' must be a list of rows, got {_describe(rows)}")
        self._check_rows(len(rows), "instances")
        if type(rows[0]) is dict:
            columns = self._columns_from_objects(rows)
        elif type(rows[0]) is list:
            columns = self._columns_from_lists(rows)
        else:
            raise InvalidRequest(
                f"instances[0] must be an object keyed by feature name or a list of "
                f"{len(self.names)} values in schema order, got {_describe(rows[0])}"
            )
        return self.assemble(columns, len(rows))

    def _check_rows(self, n: int, field: str) -> None:
        if n == 0:
            raise InvalidRequest(f"'{field}' is empty: send at least one row")
        if n > self.limits.max_rows:
            raise InvalidRequest(
                f"'{field}' has {n} rows, over this server's limit of {self.limits.max_rows} "
                "rows per request; split the batch"
            )

    def _columns_from_objects(self, rows: list[Any]) -> list[Sequence[Any]]:
        # The usual body, checked and transposed in C: every row an object with as many keys as
        # there are features, each feature present (so no other key). Anything else takes the
        # row-by-row loop below, which names the first bad row.
        width = len(self.names)
        if width > 1 and set(map(type, rows)) == {dict} and set(map(len, rows)) == {width}:
            try:
                return list(zip(*map(self._values_of, rows), strict=True))
            except KeyError:
                pass
        expected = self.name_set
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise InvalidRequest(
                    f"instances[{i}] must be an object like instances[0], got {_describe(row)}"
                )
            if row.keys() != expected:
                missing = [n for n in self.names if n not in row]
                if missing:
                    raise InvalidRequest(
                        f"instances[{i}] lacks feature(s) {missing}; send null for an unknown value "
                        "of a nullable feature"
                    )
                unknown = sorted(k for k in row if k not in expected)
                raise InvalidRequest(
                    f"instances[{i}] has unknown field(s) {unknown}; the model's features are "
                    f"{self.names}"
                )
        return [[row[name] for row in rows] for name in self.names]

    def _columns_from_lists(self, rows: list[Any]) -> list[Sequence[Any]]:
        width = len(self.names)
        for i, row in enumerate(rows):
            if type(row) is not list:
                raise InvalidRequest(
                    f"instances[{i}] must be a list like instances[0], got {_describe(row)}"
                )
            if len(row) != width:
                raise InvalidRequest(
                    f"instances[{i}] has {len(row)} values; expected {width} in schema order "
                    f"{self.names}"
                )
        return list(zip(*rows, strict=True))

    # --- V2: one input tensor per feature ------------------------------------------------------
    def from_v2(self, inputs: list[InferInput]) -> np.ndarray:
        if not inputs:
            raise InvalidRequest("'inputs' is empty: send one input tensor per feature")
        by_name = self._inputs_by_name(inputs)
        missing = [n for n in self.names if n not in by_name]
        if missing:
            raise InvalidRequest(f"inputs lack feature(s) {missing}; send one input per feature")
        n_rows: int | None = None
        columns: list[Sequence[Any]] = []
        for f in self.features:
            inp = by_name[f.name]
            rows = _tensor_rows(inp)
            if n_rows is None:
                n_rows = rows
                self._check_rows(n_rows, f"inputs[{f.name}]")
            elif rows != n_rows:
                raise InvalidRequest(
                    f"input '{f.name}' has {rows} rows but '{self.names[0]}' has {n_rows}; "
                    "every input needs the same number of rows"
                )
            datatype = str(inp.datatype).upper()
            if f.is_numeric and datatype not in NUMERIC_DATATYPES:
                raise InvalidRequest(
                    f"input '{f.name}' has datatype {datatype}; a numeric feature needs FP64, "
                    "FP32 or an INT type"
                )
            if not f.is_numeric and datatype != "BYTES":
                raise InvalidRequest(
                    f"input '{f.name}' has datatype {datatype}; a categorical feature needs BYTES"
                )
            data = _tensor_data(inp, n_rows)
            if datatype in _INTEGER_DATATYPES:
                _check_integers(f.name, datatype, data)
            columns.append(data)
        assert n_rows is not None
        return self.assemble(columns, n_rows)

    def _inputs_by_name(
        self, inputs: list[InferInput], key: str | None = None
    ) -> dict[str, InferInput]:
        """Each input by name; every name a feature (or the entity `key`), none sent twice."""
        by_name: dict[str, InferInput] = {}
        for inp in inputs:
            if inp.name not in self.name_set and inp.name != key:
                keyed = f", or the entity key '{key}' and any of them" if key else ""
                raise InvalidRequest(
                    f"unknown input '{inp.name}'; the model's inputs are the features "
                    f"{self.names}{keyed}"
                )
            if inp.name in by_name:
                raise InvalidRequest(f"input '{inp.name}' is sent twice")
            by_name[inp.name] = inp
        return by_name

    # --- V2 by entity key: the key tensor and the features sent with it, as rows ---------------
    def v2_keyed_rows(self, inputs: list[InferInput], key: str) -> list[dict[str, Any]] | None:
        """Each row's key and the features sent with it, for a V2 request that has an input named
        `key` (the entity key); None when it has none. Only the tensors' shapes are checked here
        (so nothing is looked up for a malformed request): the sent values are checked by
        `from_v2`, with the looked-up ones, as in any V2 request."""
        by_name = self._inputs_by_name(inputs, key)
        if key not in by_name:
            return None
        key_input = by_name.pop(key)
        n_rows = _tensor_rows(key_input)
        self._check_rows(n_rows, f"inputs[{key}]")
        keys = _key_values(key, str(key_input.datatype).upper(), _tensor_data(key_input, n_rows))
        columns = {}
        for name, inp in by_name.items():
            if _tensor_rows(inp) != n_rows:
                raise InvalidRequest(
                    f"input '{name}' has {_tensor_rows(inp)} rows but the key '{key}' has "
                    f"{n_rows}; every input needs the same number of rows"
                )
            columns[name] = _tensor_data(inp, n_rows)
        return [
            {key: k, **{name: column[i] for name, column in columns.items()}}
            for i, k in enumerate(keys)
        ]

    # --- shared: type, missing, finite and category checks -------------------------------------
    def assemble(self, columns: Sequence[Sequence[Any]], n_rows: int) -> np.ndarray:
        out = np.empty((n_rows, len(self.names)), dtype=object)
        for j, f in enumerate(self.features):
            col = columns[j]
            out[:, j] = (
                self._numeric_column(f, col) if f.is_numeric else self._category_column(f, col)
            )
        return out

    def _numeric_column(self, f: Feature, col: Sequence[Any]) -> np.ndarray:
        types = set(map(type, col))
        if not types <= _NUMBER_TYPES:
            i, v = next((i, v) for i, v in enumerate(col) if type(v) not in _NUMBER_TYPES)
            raise InvalidRequest(
                f"feature '{f.name}' (row {i}): expected a number"
                f"{' or null' if f.nullable else ''}, got {_describe(v)}"
            )
        try:
            values = np.array(col, dtype=np.float64)
        except OverflowError as e:  # an integer beyond float64's range
            raise InvalidRequest(f"feature '{f.name}': a value is out of range: {e}") from e
        if types != {int}:  # ints cannot be NaN or infinite; skip the scan for them
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.argmax(bad))
                v = col[i]
                if v is not None and math.isinf(v):
                    raise InvalidRequest(
                        f"feature '{f.name}' (row {i}): infinite values are not allowed"
                    )
                if not f.nullable:
                    raise InvalidRequest(
                        f"feature '{f.name}' (row {i}) is required, got "
                        f"{'null' if v is None else 'NaN'}"
                    )
        return values

    def _category_column(self, f: Feature, col: Sequence[Any]) -> Sequence[Any]:
        types = set(map(type, col))
        if not types <= _CATEGORY_TYPES:
            i, v = next((i, v) for i, v in enumerate(col) if type(v) not in _CATEGORY_TYPES)
            raise InvalidRequest(
                f"feature '{f.name}' (row {i}): expected a string category"
                f"{' or null' if f.nullable else ''}, got {_describe(v)}"
            )
        seen = set(col)
        if None in seen:
            if not f.nullable:
                i = list(col).index(None)
                raise InvalidRequest(f"feature '{f.name}' (row {i}) is required, got null")
            seen.discard(None)
        allowed = self.allowed[f.name]
        if self.limits.unknown_category == "reject" and not seen <= allowed:
            i, v = next((i, v) for i, v in enumerate(col) if v is not None and v not in allowed)
            raise InvalidRequest(
                f"feature '{f.name}' (row {i}): unknown category {v!r}; known categories are "
                f"{sorted(allowed)} (the server is configured to reject unseen categories)"
            )
        return col
