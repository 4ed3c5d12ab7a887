"""Shadow readout: after N mirrored requests, how the shadow version's answers compare with the
primary's on the same requests, and whether that passes the policy's bounds.

The shadow's answers never reach a client; what is read here is each mirrored request's pair of
answers (joined by request id by whatever mirrors: the platform's tee, see docs/experiments.md):
- agreement: the same predicted label (classification), or a value within `tolerance`
  (regression);
- prediction PSI between the two distributions, with `mlops_core.drift`'s PSI on the primary's
  quantile buckets (class shares for multiclass);
- latency ratio: the shadow's `latency_quantile` over the primary's;
- error count: mirrored requests the shadow failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_core.drift import profile_categorical, profile_numeric, psi
from mlops_core.settings import DEFAULT_DECISION_THRESHOLD
from mlops_core.target import TASKS


@dataclass(frozen=True, kw_only=True)
class ShadowPolicy:
    task: str
    mirror_percent: int = 100  # share of live requests copied to the shadow
    requests: int = 1000  # mirrored requests before the readout
    threshold: float = (
        DEFAULT_DECISION_THRESHOLD  # binary: the probability that makes the positive class
    )
    tolerance: float = 0.0  # regression: |shadow - primary| that still agrees
    min_agreement: float = 0.95
    max_psi: float = 0.2
    latency_quantile: float = 0.99
    max_latency_ratio: float = 1.5
    max_errors: int = 0
    psi_bins: int = 10
    canary_percent: int = 0  # a passing shadow becomes a canary at this share (0: it stops)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ExperimentPolicyError(f"unknown task {self.task!r}; choose one of {list(TASKS)}")
        if not 1 <= self.mirror_percent <= 100:
            raise ExperimentPolicyError(
                f"mirror_percent must be in [1, 100], got {self.mirror_percent}"
            )
        if self.requests < 10:
            raise ExperimentPolicyError(f"requests must be at least 10, got {self.requests}")
        if not 0 <= self.min_agreement <= 1 or self.tolerance < 0:
            raise ExperimentPolicyError("min_agreement must be in [0, 1] and tolerance 0 or more")
        if self.max_psi <= 0 or self.max_latency_ratio <= 0 or self.max_errors < 0:
            raise ExperimentPolicyError(
                "max_psi and max_latency_ratio must be positive, max_errors >= 0"
            )
        if not 0 <= self.canary_percent <= 100:
            raise ExperimentPolicyError(
                f"canary_percent must be in [0, 100], got {self.canary_percent}"
            )
        if not 0.5 <= self.latency_quantile < 1 or self.psi_bins < 2:
            raise ExperimentPolicyError("latency_quantile must be in [0.5, 1) and psi_bins >= 2")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MirroredRequest:
    request_id: str
    primary: float  # `prediction_score` of the primary's answer
    primary_latency_s: float
    shadow: float | None  # None: the shadow failed (an error or a timeout)
    shadow_latency_s: float | None = None


@dataclass(frozen=True)
class ShadowReadout:
    status: Literal["waiting", "pass", "fail"]
    requests: int
    agreement: float
    psi: float
    latency_ratio: float
    errors: int
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return {
            k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()
        }


def _labels(policy: ShadowPolicy, scores: np.ndarray) -> np.ndarray:
    if policy.task == "binary":
        return (scores >= policy.threshold).astype(int)
    return scores.astype(int)


def _psi(policy: ShadowPolicy, primary: np.ndarray, shadow: np.ndarray) -> float:
    if policy.task == "multiclass":
        profile = profile_categorical("prediction", primary.astype(int).astype(str))
        counts = profile.bucket_counts(shadow.astype(int).astype(str))
    else:
        profile = profile_numeric("prediction", primary, policy.psi_bins)
        counts = profile.bucket_counts(shadow)
    return psi(np.asarray(profile.proportions), counts)


def shadow_readout(policy: ShadowPolicy, mirrored: Sequence[MirroredRequest]) -> ShadowReadout:
    """The readout of the first `policy.requests` mirrored requests ("waiting" before that)."""
    batch = list(mirrored)[: policy.requests]
    errors = sum(m.shadow is None for m in batch)
    answered = [m for m in batch if m.shadow is not None]
    nan = float("nan")
    if not answered:
        return ShadowReadout("waiting" if len(batch) < policy.requests else "fail", len(batch),
                             nan, nan, nan, errors,
                             () if len(batch) < policy.requests else ("the shadow answered no mirrored request",))  # fmt: skip
    p = np.array([m.primary for m in answered], dtype=float)
    s = np.array([m.shadow for m in answered], dtype=float)
    if policy.task == "regression":
        agreement = float(np.mean(np.abs(s - p) <= policy.tolerance))
    else:
        agreement = float(np.mean(_labels(policy, s) == _labels(policy, p)))
    q = policy.latency_quantile
    p_lat = np.quantile([m.primary_latency_s for m in answered], q)
    s_lat = np.quantile([m.shadow_latency_s or 0.0 for m in answered], q)
    ratio = float(s_lat / p_lat) if p_lat > 0 else nan
    value = _psi(policy, p, s)
    if len(batch) < policy.requests:
        return ShadowReadout("waiting", len(batch), agreement, value, ratio, errors)
    reasons = []
    if agreement < policy.min_agreement:
        reasons.append(f"agreement {agreement:.3f} below {policy.min_agreement:g}")
    if value > policy.max_psi:
        reasons.append(f"prediction PSI {value:.3f} above {policy.max_psi:g}")
    if not ratio <= policy.max_latency_ratio:
        reasons.append(
            f"p{round(q * 100)} latency {ratio:.2f}x the primary's, above {policy.max_latency_ratio:g}x"
        )
    if errors > policy.max_errors:
        reasons.append(f"{errors} errors on mirrored requests, above {policy.max_errors}")
    status: Literal["pass", "fail"] = "fail" if reasons else "pass"
    return ShadowReadout(status, len(batch), agreement, value, ratio, errors, tuple(reasons))
