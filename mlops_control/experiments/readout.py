"""Per-version readout on the task metric, valid under continuous monitoring: each version's mean
reward, its effect against the control, and the winner once the evidence separates it.

Differences between versions are estimated within each interval and then pooled (weights
w = n_a n_b / (n_a + n_b), the inverse variance of a within-interval difference of means). A
reward that drifts for every version alike then cancels: comparing whole-run means instead would
credit a version with the good hours it happened to serve, which an adaptive split (a bandit) makes
likely. The pooled sum is a martingale in the weights, so `sequential.mean_confidence_sequence`
(with the summed weight as the sample size) bounds it at every look at once.

Simultaneous coverage: every pair of K versions gets alpha / (K(K-1)/2), so a winner (every
difference against it bounded below 0) is declared among equal versions with probability at most
alpha, however many looks are taken and however the traffic moved between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from mlops_control.experiments.evidence import ArmRewards
from mlops_control.rollout.sequential import mean_confidence_sequence


@dataclass(frozen=True)
class PairEvidence:
    """Within-interval differences of mean reward between two versions, pooled."""

    weight: float = 0.0  # sum of n_a n_b / (n_a + n_b)
    diff: float = 0.0  # sum of weight * (mean_a - mean_b)

    def to_dict(self) -> dict[str, float]:
        return {"weight": self.weight, "diff": self.diff}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> PairEvidence:
        return cls(float(doc["weight"]), float(doc["diff"]))


def pair_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def pairs_of(versions: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    return list(combinations(versions, 2))


def add_interval(
    pairs: dict[str, PairEvidence], versions: tuple[str, ...], batch: dict[str, ArmRewards]
) -> dict[str, PairEvidence]:
    """One interval's matured rewards added to every pair that has labels on both sides."""
    out = dict(pairs)
    for a, b in pairs_of(versions):
        ra, rb = batch.get(a), batch.get(b)
        if ra is None or rb is None or not ra.labelled or not rb.labelled:
            continue
        w = ra.labelled * rb.labelled / (ra.labelled + rb.labelled)
        old = out.get(pair_key(a, b), PairEvidence())
        out[pair_key(a, b)] = PairEvidence(old.weight + w, old.diff + w * (ra.mean - rb.mean))
    return out


@dataclass(frozen=True)
class VersionReadout:
    version: str
    labelled: float
    mean: float
    low: float  # always-valid interval of the mean
    high: float
    effect: float  # difference from the control, within intervals
    effect_low: float
    effect_high: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in self.__dict__.items()}


def _finite(v: Any) -> Any:
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    return v


def _variance(t: ArmRewards, fallback: float) -> float:
    v = t.variance
    return v if t.labelled >= 2 and v == v else fallback


def difference(
    pairs: dict[str, PairEvidence],
    totals: dict[str, ArmRewards],
    a: str,
    b: str,
    alpha: float,
    tightest_at: float,
) -> tuple[float, float, float]:
    """mean_a - mean_b within intervals, and its always-valid interval at `alpha`."""
    flipped = pair_key(a, b) not in pairs and pair_key(b, a) in pairs
    p = pairs.get(pair_key(b, a) if flipped else pair_key(a, b), PairEvidence())
    if p.weight <= 0:
        return float("nan"), float("-inf"), float("inf")
    fallback = _pooled_variance(totals)
    # Unequal variances: the larger one makes the interval wide enough for either.
    var = max(_variance(totals[a], fallback), _variance(totals[b], fallback))
    est = p.diff / p.weight * (-1.0 if flipped else 1.0)
    low, high = mean_confidence_sequence(p.weight, est, var, alpha, tightest_at)
    return est, low, high


def _pooled_variance(totals: dict[str, ArmRewards]) -> float:
    pooled = sum(totals.values(), ArmRewards())
    v = pooled.variance
    return v if v == v else 0.25


def readouts(
    totals: dict[str, ArmRewards],
    pairs: dict[str, PairEvidence],
    control: str,
    alpha: float,
    tightest_at: float,
) -> dict[str, VersionReadout]:
    k = len(totals)
    fallback = _pooled_variance(totals)
    pair_alpha = alpha / max(k * (k - 1) / 2, 1)
    out = {}
    for v, t in totals.items():
        low, high = mean_confidence_sequence(
            t.labelled, t.mean, _variance(t, fallback), alpha / k, tightest_at
        )
        if v == control:
            effect = (0.0, 0.0, 0.0)
        else:
            effect = difference(pairs, totals, v, control, pair_alpha, tightest_at)
        out[v] = VersionReadout(v, t.labelled, t.mean, low, high, *effect)
    return out


def separated_winner(
    totals: dict[str, ArmRewards],
    pairs: dict[str, PairEvidence],
    alpha: float,
    tightest_at: float,
    min_labelled: float,
) -> str | None:
    """The version better than every other one: each difference's lower bound above 0."""
    versions = list(totals)
    if len(versions) < 2 or any(totals[v].labelled < min_labelled for v in versions):
        return None
    pair_alpha = alpha / (len(versions) * (len(versions) - 1) / 2)
    for v in versions:
        if all(
            difference(pairs, totals, v, o, pair_alpha, tightest_at)[1] > 0
            for o in versions
            if o != v
        ):
            return v
    return None
