"""Drift statistics: PSI, Kolmogorov-Smirnov and chi-square, in one implementation.

Used by the validate step (new training data vs the champion's reference) and by the live drift
monitor (traffic vs training data). The reference is summarised once into a `ReferenceProfile`
(quantile bin edges and proportions per feature, JSON-serialisable, stored with every registered
model), so comparing a window of traffic is a `searchsorted` and a few vector operations per
feature, never a pass over the training data.

Decision rule per feature: drifted when PSI >= `psi` threshold, or when the statistical test is
significant (p < `alpha`) *and* the effect is material (KS statistic >= `ks_statistic` for numeric
features, Cramér's V >= `cramers_v` for categorical ones). With large windows every tiny difference
is "significant", so the effect-size floor keeps the false-alarm rate down.
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlops_core.schema import FeatureSchema
from mlops_core.settings import (
    DEFAULT_DRIFT_ALPHA,
    DEFAULT_DRIFT_CRAMERS_V,
    DEFAULT_DRIFT_KS_STATISTIC,
    DEFAULT_DRIFT_PSI,
)

OTHER = "__other__"  # bucket for categories the reference never saw
MISSING = "__missing__"
_EPS = 1e-4  # floor for empty bins so PSI stays finite


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = DEFAULT_DRIFT_PSI
    alpha: float = DEFAULT_DRIFT_ALPHA
    ks_statistic: float = DEFAULT_DRIFT_KS_STATISTIC
    cramers_v: float = DEFAULT_DRIFT_CRAMERS_V


@dataclass(frozen=True)
class FeatureProfile:
    """The reference distribution of one feature.

    numeric: `edges` are interior quantile cut points; bins are (-inf, e0], (e0, e1], ..., (ek, inf).
    categorical: `categories` in a fixed order plus the OTHER bucket last.
    `proportions` includes the share of missing values as its last entry.
    """

    name: str
    kind: str
    proportions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    count: int = 0

    def bucket_counts(self, values: np.ndarray | pd.Series) -> np.ndarray:
        """Counts of `values` in this profile's buckets (last bucket: missing)."""
        if self.kind == "numeric":
            x = as_float(values)
            missing = np.isnan(x)
            idx = np.searchsorted(np.asarray(self.edges), x[~missing], side="left")
            counts = np.bincount(idx, minlength=len(self.edges) + 1).astype(float)
            return np.append(counts, missing.sum())
        counted = _text_counts(values, self.categories)
        if counted is not None:
            return counted
        s = pd.Series(values, copy=False)
        index = pd.Index(self.categories)
        codes = index.get_indexer(s)  # a hash lookup; most values are known category strings
        unmatched = np.flatnonzero(codes < 0)
        missing = 0
        if unmatched.size:  # only these can be missing, unseen, or non-strings like 1 for "1"
            rest = s.iloc[unmatched]
            is_missing = rest.isna().to_numpy()
            missing = int(is_missing.sum())
            codes[unmatched[is_missing]] = -2
            retry = unmatched[~is_missing]
            if retry.size:
                codes[retry] = index.get_indexer(s.iloc[retry].astype(str))
        counts = np.bincount(codes[codes >= 0], minlength=len(self.categories)).astype(float)
        other = float((codes == -1).sum())
        return np.concatenate([counts, [other, missing]])


def _text_counts(values: np.ndarray | pd.Series, categories: tuple[str, ...]) -> np.ndarray | None:
    """Bucket counts of a column of str and None only (the predictor's rows), counted per distinct
    value (`collections.Counter` counts in C) and each value looked up once; None when the column
    holds anything else (numbers, NaN, pandas' NA), which the general path handles."""
    counts = collections.Counter(values.tolist())
    if not all(type(v) is str or v is None for v in counts):
        return None
    out = np.zeros(len(categories) + 2)
    slot = {c: k for k, c in enumerate(categories)}
    other, missing = len(categories), len(categories) + 1
    for value, n in counts.items():
        out[missing if value is None else slot.get(value, other)] += n
    return out


def as_float(values: np.ndarray | pd.Series) -> np.ndarray:
    """Values as floats, NaN for missing. The predictor's object rows (floats and None) take the
    fast cast; anything with unparseable entries goes through `pd.to_numeric`, which makes them NaN.
    """
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        coerced: np.ndarray = pd.to_numeric(
            pd.Series(values, copy=False), errors="coerce"
        ).to_numpy(float)
        return coerced


@dataclass(frozen=True)
class ReferenceProfile:
    features: tuple[FeatureProfile, ...]
    prediction: FeatureProfile | None = None

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no reference profile for feature {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ReferenceProfile:
        def fp(d: dict[str, Any]) -> FeatureProfile:
            return FeatureProfile(
                name=d["name"],
                kind=d["kind"],
                proportions=tuple(d["proportions"]),
                edges=tuple(d.get("edges", ())),
                categories=tuple(d.get("categories", ())),
                count=d.get("count", 0),
            )

        pred = doc.get("prediction")
        return cls(
            features=tuple(fp(d) for d in doc["features"]),
            prediction=fp(pred) if pred else None,
        )


def profile_numeric(name: str, values: np.ndarray | pd.Series, bins: int = 20) -> FeatureProfile:
    x = pd.to_numeric(pd.Series(values, copy=False), errors="coerce").to_numpy(float)
    present = x[~np.isnan(x)]
    if present.size == 0:
        edges: np.ndarray = np.array([])
    else:
        qs = np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)  # ties (e.g. integer features) collapse bins
    profile = FeatureProfile(name, "numeric", (), tuple(float(e) for e in edges), count=len(x))
    return _with_proportions(profile, x)


def profile_categorical(name: str, values: np.ndarray | pd.Series) -> FeatureProfile:
    s = pd.Series(values, copy=False)
    cats = tuple(sorted(str(v) for v in s.dropna().unique()))
    profile = FeatureProfile(name, "categorical", (), categories=cats, count=len(s))
    return _with_proportions(profile, s)


def _with_proportions(profile: FeatureProfile, values: Any) -> FeatureProfile:
    return with_counts(profile, profile.bucket_counts(values))


def with_counts(profile: FeatureProfile, counts: np.ndarray) -> FeatureProfile:
    """`profile` with proportions from its bucket counts: one sample's, or the sum of each
    partition's `bucket_counts` (the distributed reference, components/train_dask.py)."""
    total = counts.sum()
    props = counts / total if total else counts
    return FeatureProfile(
        profile.name,
        profile.kind,
        tuple(float(p) for p in props),
        profile.edges,
        profile.categories,
        profile.count,
    )


def profile_reference(
    df: pd.DataFrame,
    schema: FeatureSchema,
    *,
    predictions: np.ndarray | None = None,
    bins: int = 20,
) -> ReferenceProfile:
    """Summarise training data (and optionally the model's predictions on it)."""
    features = tuple(
        profile_numeric(f.name, df[f.name], bins)
        if f.is_numeric
        else profile_categorical(f.name, df[f.name])
        for f in schema.features
    )
    pred = profile_numeric("prediction", predictions, bins) if predictions is not None else None
    return ReferenceProfile(features=features, prediction=pred)


# --- the statistics ----------------------------------------------------------------------------


def psi(expected: np.ndarray, actual_counts: np.ndarray) -> float:
    """Population stability index of observed counts against expected proportions."""
    total = actual_counts.sum()
    if total == 0:
        return 0.0
    e = np.clip(np.asarray(expected, float), _EPS, None)
    a = np.clip(actual_counts / total, _EPS, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_counts(
    expected: np.ndarray, actual_counts: np.ndarray, n_ref: int
) -> tuple[float, float]:
    """Two-sample KS statistic from bucket counts (exact at the bucket edges) and its p-value.

    The missing bucket is excluded; `n_ref` counts the reference's non-missing values. With `edges`
    at fine quantiles this tracks `ks_2samp` closely (equal when every distinct value has its own
    bucket), and the p-value is scipy's asymptotic one (`kstwo` at the effective sample size);
    `ks_exact` below is the unbinned version for when both samples are at hand.
    """
    e = np.asarray(expected[:-1], float)
    a = np.asarray(actual_counts[:-1], float)
    n_cur = a.sum()
    if n_cur == 0 or e.sum() == 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(e / e.sum()) - np.cumsum(a / n_cur))))
    n_eff = n_ref * n_cur / (n_ref + n_cur) if n_ref else n_cur
    return d, float(stats.kstwo.sf(d, max(1, round(n_eff))))


def ks_exact(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    r = stats.ks_2samp(reference, current, method="asymp")
    return float(r.statistic), float(r.pvalue)


def chi_square(expected: np.ndarray, actual_counts: np.ndarray) -> tuple[float, float, float]:
    """Chi-square goodness of fit of observed category counts against expected proportions.

    Returns (statistic, p-value, Cramér's V). The missing bucket is excluded; an unseen-category
    bucket with zero expected mass gets the `_EPS` floor so new categories register as drift.
    """
    e = np.clip(np.asarray(expected[:-1], float), _EPS, None)
    a = np.asarray(actual_counts[:-1], float)
    n = a.sum()
    if n == 0:
        return 0.0, 1.0, 0.0
    exp_counts = e / e.sum() * n
    stat, p = stats.chisquare(a, exp_counts)
    k = max(len(a) - 1, 1)
    # Capped at 1: with an unseen category the floor-sized expected cell makes chi2 unbounded.
    return float(stat), float(p), float(min(1.0, np.sqrt(stat / (n * k))))


# --- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    psi: float
    test: str  # "ks" or "chi2"
    statistic: float
    p_value: float
    effect: float  # KS statistic or Cramér's V
    drifted: bool
    reason: str = ""


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    rows: int
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / len(self.features) if self.features else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def feature_drift(
    profile: FeatureProfile, counts: np.ndarray, thresholds: DriftThresholds
) -> FeatureDrift:
    """Judge one feature from its bucket counts in the current window."""
    p = psi(np.asarray(profile.proportions), counts)
    if profile.kind == "numeric":
        n_ref = round(profile.count * (1.0 - profile.proportions[-1])) if profile.proportions else 0
        stat, pval = ks_from_counts(np.asarray(profile.proportions), counts, n_ref)
        test, effect, floor = "ks", stat, thresholds.ks_statistic
    else:
        stat, pval, effect = chi_square(np.asarray(profile.proportions), counts)
        test, floor = "chi2", thresholds.cramers_v
    reasons = []
    if p >= thresholds.psi:
        reasons.append(f"PSI {p:.3f} >= {thresholds.psi}")
    if pval < thresholds.alpha and effect >= floor:
        reasons.append(f"{test} p={pval:.2g} with effect {effect:.3f} >= {floor}")
    return FeatureDrift(
        feature=profile.name,
        kind=profile.kind,
        psi=p,
        test=test,
        statistic=stat,
        p_value=pval,
        effect=effect,
        drifted=bool(reasons),
        reason="; ".join(reasons),
    )


def compare(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    *,
    thresholds: DriftThresholds | None = None,
    predictions: np.ndarray | None = None,
) -> DriftReport:
    """Compare a current frame (and optionally its predictions) against the reference."""
    counts = {
        fp.name: fp.bucket_counts(current[fp.name].to_numpy())
        for fp in reference.features
        if fp.name in current.columns
    }
    prediction_counts = (
        reference.prediction.bucket_counts(predictions)
        if predictions is not None and reference.prediction is not None
        else None
    )
    return compare_counts(
        reference, counts, rows=len(current), thresholds=thresholds, prediction=prediction_counts
    )


def compare_counts(
    reference: ReferenceProfile,
    counts: dict[str, np.ndarray],
    *,
    rows: int,
    thresholds: DriftThresholds | None = None,
    prediction: np.ndarray | None = None,
) -> DriftReport:
    """Judge bucket counts already accumulated over the reference's bins.

    The live monitor sums `bucket_counts` over a sliding window and calls this; `compare` is the
    same judgement for a whole frame at hand.
    """
    thresholds = thresholds or DriftThresholds()
    results = [
        feature_drift(fp, counts[fp.name], thresholds)
        for fp in reference.features
        if fp.name in counts
    ]
    if prediction is not None and reference.prediction is not None:
        results.append(feature_drift(reference.prediction, prediction, thresholds))
    return DriftReport(features=tuple(results), rows=rows, thresholds=thresholds)
