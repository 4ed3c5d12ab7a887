"""The fast inference path: a fitted scikit-learn Pipeline compiled into NumPy + the model's own call.

Why: `Pipeline.predict_proba` spends ~20x the trees' time in the ColumnTransformer (pandas-style
column selection, per-step input validation, `np.hstack`). The preprocessing the platform fits
(`components.train.build_preprocessor`) is a handful of fitted arrays: imputation values, missing
indicators, scaler mean/scale, one-hot category lists. Compiled here they become one preallocated
float64 matrix filled column by column, handed straight to the estimator's cheapest exact call
(XGBoost's `inplace_predict`, a dot product for linear models).

Why not a library: ONNX (skl2onnx + onnxruntime) converts to float32 and its TreeEnsemble
reimplements XGBoost's trees, so probabilities drift by ~1e-7..1e-5 and the ≤ 1e-6 contract cannot
be promised; Hummingbird (tensor trees, PyTorch) has the same float32 issue and a large dependency;
treelite/tl2cgen need a C compiler at load time. Keeping the fitted sklearn objects' arrays and the
estimator's own predict keeps the result exact (same float64 features, same booster) for ~200 lines.

Extending: an estimator is compiled by a function registered in `ESTIMATOR_COMPILERS` (keyed by
class); a preprocessing step by one in `STEP_COMPILERS`. Anything not registered raises
`NotCompilable`, and `fast_model` falls back to the Pipeline with a log line. `fast_model` also checks
the compiled path against the Pipeline on probe rows built from the schema (every category, None,
an unseen category, NaN, min/max) and falls back if any output differs by more than `TOLERANCE`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mlops_core.row_checks import CodedColumn, Column, rows_array
from mlops_core.schema import FeatureSchema

logger = logging.getLogger(__name__)

TOLERANCE = 1e-6  # the contract: max |fast - Pipeline| on any output
SMALL_BATCH = 256  # rows below which per-value dict lookups are the fastest categorical encoding


class NotCompilable(Exception):
    """The Pipeline holds a step or estimator the compiler does not know (so: use the Pipeline)."""


class ModelFunction(Protocol):
    """What serving and batch call: rows (schema-order object array) -> model outputs."""

    def predict_proba(self, rows: np.ndarray) -> np.ndarray: ...


# --- preprocessing: fitted transformers -> column plans -------------------------------------------
@dataclass(frozen=True)
class NumericBlock:
    """SimpleImputer (+ its missing indicator) (+ StandardScaler) over some input columns."""

    columns: np.ndarray  # input column positions
    fill: np.ndarray  # per column: the value a NaN becomes
    indicator: np.ndarray  # positions (within `columns`) that get a 0/1 "was missing" column
    mean: np.ndarray | None  # StandardScaler over [values, indicators]; None: no scaling
    scale: np.ndarray | None

    @property
    def width(self) -> int:
        return len(self.columns) + len(self.indicator)

    def write(self, columns: Sequence[Column], out: np.ndarray) -> None:
        n = len(self.columns)
        values = out[:, :n]
        for k, j in enumerate(self.columns):
            values[:, k] = columns[j]  # an object column is cast to float64 here
        missing = np.isnan(values)
        np.copyto(values, np.broadcast_to(self.fill, values.shape), where=missing)
        out[:, n:] = missing[:, self.indicator]
        if self.mean is not None and self.scale is not None:
            out -= self.mean
            out /= self.scale


@dataclass(frozen=True)
class OneHotBlock:
    """SimpleImputer(constant) + OneHotEncoder(handle_unknown='ignore') over some input columns."""

    columns: np.ndarray
    lookups: tuple[dict[Any, int], ...]  # per column: value -> output offset within the block
    width: int  # output columns: one per known category
    spans: tuple[tuple[int, int], ...]  # per column: its [start, end) within the block

    def write(self, columns: Sequence[Column], out: np.ndarray) -> None:
        n = len(out)
        for column, lookup, (start, end) in zip(
            self.columns, self.lookups, self.spans, strict=True
        ):
            codes = self._codes(columns[column], lookup, n) - start  # unseen: < 0 -> all zeros
            # One comparison per category column: a vectorised one-hot without scatter indexing.
            np.equal(
                codes[:, None], np.arange(end - start), out=out[:, start:end], casting="unsafe"
            )

    @staticmethod
    def _codes(values: Column, lookup: dict[Any, int], n: int) -> np.ndarray:
        """Each value's output column (-1: unseen). Exact equality, as the encoder's own lookup."""
        if isinstance(values, CodedColumn):  # each distinct value looked up once
            table = [lookup.get(v, -1) for v in values.values] + [lookup.get(None, -1)]
            return np.asarray(table, np.intp)[values.codes]  # code -1 (missing) -> the None entry
        if n < SMALL_BATCH:  # a dict lookup per value beats setting up a hash table
            get = lookup.get
            return np.fromiter((get(v, -1) for v in values), np.intp, n)
        import pandas as pd

        known = [k for k in lookup if k is not None]
        codes = pd.Categorical(values, categories=known).codes.astype(np.intp)
        codes = np.where(codes >= 0, np.array([lookup[k] for k in known], np.intp)[codes], -1)
        if None in lookup:  # the imputer's fill category for a missing value
            # None only: a NaN is no category. numpy's stubs have no overload for an object array
            # compared with None (it compares element-wise).
            codes[np.equal(values, None)] = lookup[None]  # type: ignore[call-overload]
        return codes


Block = NumericBlock | OneHotBlock


def _numeric_block(columns: list[int], steps: list[Any]) -> NumericBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    if not steps or type(steps[0]) is not SimpleImputer:
        raise NotCompilable("a numeric branch must start with SimpleImputer")
    imputer, rest = steps[0], steps[1:]
    if imputer.strategy not in ("mean", "median", "constant") or not _nan(imputer.missing_values):
        raise NotCompilable(f"numeric SimpleImputer(strategy={imputer.strategy!r}) on non-NaN")
    fill = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(fill).any():  # an all-missing column without keep_empty_features: dropped
        raise NotCompilable("an imputer drops an empty column")
    indicator = np.array([], dtype=np.intp)
    if imputer.add_indicator:
        ind = imputer.indicator_
        if ind.features != "missing-only" or ind.sparse not in (False, "auto"):
            raise NotCompilable("a MissingIndicator other than missing-only dense")
        indicator = np.asarray(ind.features_, dtype=np.intp)
    mean = scale = None
    if rest:
        scaler = rest[0]
        if len(rest) > 1 or type(scaler) is not StandardScaler:
            raise NotCompilable(f"numeric steps after the imputer: {rest}")
        width = len(columns) + len(indicator)
        mean = scaler.mean_ if scaler.with_mean else np.zeros(width)
        scale = scaler.scale_ if scaler.with_std else np.ones(width)
    return NumericBlock(np.asarray(columns, np.intp), fill, indicator, mean, scale)


def _one_hot_block(columns: list[int], steps: list[Any]) -> OneHotBlock:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder

    fill: Any = None
    if steps and type(steps[0]) is SimpleImputer:
        imputer, steps = steps[0], steps[1:]
        if imputer.strategy != "constant" or imputer.missing_values is not None:
            raise NotCompilable("a categorical imputer other than constant-for-None")
        fill = imputer.fill_value
    if len(steps) != 1 or type(steps[0]) is not OneHotEncoder:
        raise NotCompilable(f"categorical steps: {steps}")
    enc = steps[0]
    if enc.handle_unknown != "ignore" or enc.drop is not None or enc.max_categories is not None:
        raise NotCompilable("OneHotEncoder without handle_unknown='ignore', or with drop/limits")
    if enc.min_frequency is not None or enc.sparse_output:
        raise NotCompilable("OneHotEncoder with infrequent categories")
    lookups = []
    spans = []
    offset = 0
    for cats in enc.categories_:
        lookup = {c: offset + i for i, c in enumerate(cats.tolist())}
        if fill is not None and fill in lookup:
            lookup[None] = lookup[fill]  # the imputer's None -> fill, then its one-hot column
        lookups.append(lookup)
        spans.append((offset, offset + len(cats)))
        offset += len(cats)
    return OneHotBlock(np.asarray(columns, np.intp), tuple(lookups), offset, tuple(spans))


def _nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _branch_steps(transformer: Any) -> list[Any]:
    from sklearn.pipeline import Pipeline

    return [s for _, s in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]


def _compile_branch(columns: list[int], transformer: Any) -> Block:
    from sklearn.preprocessing import OneHotEncoder

    steps = _branch_steps(transformer)
    if any(type(s) is OneHotEncoder for s in steps):
        return _one_hot_block(columns, steps)
    return _numeric_block(columns, steps)


def compile_preprocessor(pre: Any) -> list[Block]:
    """A fitted ColumnTransformer (remainder dropped, dense output) as column blocks, in order."""
    from sklearn.compose import ColumnTransformer

    if type(pre) is not ColumnTransformer:
        raise NotCompilable(f"preprocessing is a {type(pre).__name__}, not a ColumnTransformer")
    blocks: list[Block] = []
    for name, transformer, columns in pre.transformers_:
        if name == "remainder":
            if transformer != "drop":
                raise NotCompilable("a ColumnTransformer remainder that is not dropped")
            continue
        if transformer == "drop" or not len(columns):
            continue
        if transformer == "passthrough" or not all(
            isinstance(c, int | np.integer) for c in columns
        ):
            raise NotCompilable(f"branch {name!r}: passthrough or columns by name")
        blocks.append(_compile_branch([int(c) for c in columns], transformer))
    return blocks


# --- estimators: the model's own cheapest exact call --------------------------------------------
def _xgb_classifier(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    booster = est.get_booster()
    # The same trees `predict_proba` uses: up to the early-stopping best iteration when there is one.
    try:
        iteration_range = (0, int(booster.best_iteration) + 1)
    except AttributeError:
        iteration_range = (0, 0)
    n_classes = int(getattr(est, "n_classes_", 2))

    def predict_proba(x: np.ndarray) -> np.ndarray:
        p = booster.inplace_predict(x, iteration_range=iteration_range, predict_type="value")
        if n_classes == 2 and p.ndim == 1:
            return np.column_stack([1.0 - p, p])
        return p

    return predict_proba


def _hist_gradient_boosting(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    # No cheaper public exact call: the win is the compiled preprocessing in front of it.
    return est.predict_proba


def _logistic_regression(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    from scipy.special import expit, softmax

    coef, intercept = est.coef_.T.copy(), est.intercept_.copy()

    def predict_proba(x: np.ndarray) -> np.ndarray:
        z = x @ coef + intercept
        if z.shape[1] == 1:
            p = expit(z[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(z, axis=1)

    return predict_proba


def _xgb_regressor(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    booster = est.get_booster()
    try:
        iteration_range = (0, int(booster.best_iteration) + 1)
    except AttributeError:
        iteration_range = (0, 0)

    def predict(x: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(x, iteration_range=iteration_range, predict_type="value")

    return predict


def _hist_gradient_boosting_regressor(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    return est.predict


def _linear(est: Any) -> Callable[[np.ndarray], np.ndarray]:
    coef, intercept = est.coef_.T.copy(), est.intercept_

    def predict(x: np.ndarray) -> np.ndarray:
        return x @ coef + intercept

    return predict


def _estimator_compilers() -> dict[type, Callable[[Any], Callable[[np.ndarray], np.ndarray]]]:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from xgboost import XGBClassifier, XGBRegressor

    return {
        XGBClassifier: _xgb_classifier,
        HistGradientBoostingClassifier: _hist_gradient_boosting,
        LogisticRegression: _logistic_regression,
        XGBRegressor: _xgb_regressor,
        HistGradientBoostingRegressor: _hist_gradient_boosting_regressor,
        Ridge: _linear,
        LinearRegression: _linear,
    }


# Key: estimator class. Value: fitted estimator -> (float64 feature matrix -> the model's output):
# `predict_proba`'s for a classifier (binary or multiclass), `predict`'s for a regressor. Add an
# entry here for a new estimator or task.
ESTIMATOR_COMPILERS = _estimator_compilers()


@dataclass
class CompiledPipeline:
    """The Pipeline's preprocessing as column blocks, feeding the estimator's own call."""

    blocks: list[Block]
    model: Callable[[np.ndarray], np.ndarray]
    estimator: str
    width: int
    is_regressor: bool = False

    def transform_columns(self, columns: Sequence[Column]) -> np.ndarray:
        """Feature columns in schema order (float64; object str/None, or a CodedColumn) -> the
        model's matrix."""
        # Column-major: every block writes whole contiguous columns (~10x faster than strided
        # writes into a row-major matrix at 100k rows), and XGBoost reads a strided array as is.
        out = np.empty((len(columns[0]), self.width), dtype=np.float64, order="F")
        start = 0
        for block in self.blocks:
            end = start + block.width
            block.write(columns, out[:, start:end])
            start = end
        return out

    def transform(self, rows: np.ndarray) -> np.ndarray:
        return self.transform_columns([rows[:, j] for j in range(rows.shape[1])])

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return self.model(self.transform(rows))

    def predict_proba_columns(self, columns: Sequence[Column]) -> np.ndarray:
        return self.model(self.transform_columns(columns))

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """A regressor's values (its compiled call is `predict`); a classifier's class index."""
        out = self.model(self.transform(rows))
        return out if self.is_regressor else np.argmax(out, axis=1)


def predict_proba_columns(model: ModelFunction, columns: Sequence[Column]) -> np.ndarray:
    """`predict_proba` from columns: no (rows x features) object array on the compiled path."""
    if isinstance(model, CompiledPipeline):
        return model.predict_proba_columns(columns)
    return model.predict_proba(rows_array(list(columns)))


def compile_pipeline(pipeline: Any) -> CompiledPipeline:
    """Compile a fitted `Pipeline([preprocess, model])`; raises `NotCompilable` when it cannot."""
    from sklearn.pipeline import Pipeline

    if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
        raise NotCompilable("not a two-step Pipeline (preprocess, model)")
    pre, est = pipeline.steps[0][1], pipeline.steps[1][1]
    compiler = ESTIMATOR_COMPILERS.get(type(est))
    if compiler is None:
        raise NotCompilable(f"no fast path for estimator {type(est).__name__}")
    blocks = compile_preprocessor(pre)
    width = sum(b.width for b in blocks)
    expected = getattr(est, "n_features_in_", width)
    if width != expected:
        raise NotCompilable(f"compiled {width} features but the estimator takes {expected}")
    is_regressor = not hasattr(est, "predict_proba")
    return CompiledPipeline(blocks, compiler(est), type(est).__name__, width, is_regressor)


def model_output(model: Any, rows: np.ndarray) -> np.ndarray:
    """A classifier's `predict_proba`, a regressor's `predict` (compiled or Pipeline alike)."""
    if isinstance(model, CompiledPipeline):
        return model.model(model.transform(rows))
    return model.predict_proba(rows) if hasattr(model, "predict_proba") else model.predict(rows)


# --- the checked entry point --------------------------------------------------------------------
def probe_rows(schema: FeatureSchema) -> np.ndarray:
    """Rows that exercise every branch: each category, None, an unseen category, NaN, min/max."""
    cats = [f for f in schema.features if not f.is_numeric]
    n = max([len(f.categories) + 2 for f in cats] + [6])
    rng = np.random.default_rng(0)
    rows = np.empty((n, len(schema.features)), dtype=object)
    for j, f in enumerate(schema.features):
        if f.is_numeric:
            lo = f.min if f.min is not None else -1e3
            hi = f.max if f.max is not None else 1e3
            col = rng.uniform(lo, hi, n)
            col[:4] = [lo, hi, np.nan, (lo + hi) / 2]
            rows[:, j] = col
        else:
            values = [*f.categories, None, "__unseen__"]
            rows[:, j] = [values[i % len(values)] for i in range(n)]
    return rows


def fast_model(pipeline: Any, schema: FeatureSchema | None = None) -> ModelFunction:
    """The compiled path when it compiles and matches the Pipeline on probe rows, else the Pipeline.

    Either way the caller gets `predict_proba(rows)`; a fallback is logged with its reason.
    """
    try:
        compiled = compile_pipeline(pipeline)
        if schema is not None:
            probes = probe_rows(schema)
            diff = np.max(np.abs(model_output(compiled, probes) - model_output(pipeline, probes)))
            if not diff <= TOLERANCE:
                raise NotCompilable(f"differs from the Pipeline by {diff:.3g} on probe rows")
    except NotCompilable as e:
        logger.warning("fast inference path unavailable, using the scikit-learn Pipeline: %s", e)
        return pipeline
    logger.info("fast inference path: compiled preprocessing -> %s", compiled.estimator)
    return compiled
