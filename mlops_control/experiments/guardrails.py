"""The checks that stop an experiment arm, whatever the strategy: errors, latency and prediction
divergence of each challenger against the control, per interval, with the canary's statistics
(`mlops_control.rollout.sequential`): the mSPRT on the challenger's share of 5xx responses and of
slow requests, and the non-central chi-square test of the PSI between predicted distributions.
Each check of each challenger spends an equal part of `false_stop_rate` (a union bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_control.rollout.sequential import (
    divergence_test,
    log_evidence,
    share_llr_increment,
    spent_alpha,
)
from mlops_control.rollout.window import Histogram, VersionCounters

CHECKS = ("errors", "latency", "predictions")


class GuardrailPolicyError(ExperimentPolicyError):
    """A guardrail bound is out of range."""


@dataclass(frozen=True, kw_only=True)
class GuardrailPolicy:
    # Probability, over the whole experiment, of stopping an arm as good as the control.
    false_stop_rate: float = 0.01
    # As the canary's RolloutPolicy: a challenger's 5xx rate may be this many times the control's.
    error_rate_tolerance: float = 1.0
    latency_quantile: float = 0.99
    latency_tolerance: float = 1.5
    max_prediction_divergence: float = 0.2
    alternatives: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alternatives", tuple(float(a) for a in self.alternatives))
        if not 0 < self.false_stop_rate < 0.5:
            raise GuardrailPolicyError(
                f"false_stop_rate must be in (0, 0.5), got {self.false_stop_rate}"
            )
        if self.error_rate_tolerance < 1 or self.latency_tolerance < 1:
            raise GuardrailPolicyError(
                "error_rate_tolerance and latency_tolerance must be at least 1"
            )
        if not 0.5 <= self.latency_quantile < 1:
            raise GuardrailPolicyError(
                f"latency_quantile must be in [0.5, 1), got {self.latency_quantile}"
            )
        if self.max_prediction_divergence <= 0:
            raise GuardrailPolicyError("max_prediction_divergence must be positive")
        if not self.alternatives or min(self.alternatives) <= 1:
            raise GuardrailPolicyError("alternatives must be effect sizes above 1")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "alternatives": list(self.alternatives)}


@dataclass(frozen=True)
class ArmGuard:
    """One challenger's evidence against the control so far."""

    error_llr: tuple[float, ...] = ()
    latency_llr: tuple[float, ...] = ()
    control_predictions: Histogram | None = None
    arm_predictions: Histogram | None = None
    looks: int = 0
    failed: str = ""  # the reason it was stopped; empty while it passes

    def to_dict(self) -> dict[str, Any]:
        return {
            "error_llr": list(self.error_llr),
            "latency_llr": list(self.latency_llr),
            "control_predictions": _hist(self.control_predictions),
            "arm_predictions": _hist(self.arm_predictions),
            "looks": self.looks,
            "failed": self.failed,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ArmGuard:
        def h(d: dict[str, Any] | None) -> Histogram | None:
            return Histogram.from_dict(d) if d else None

        return cls(
            tuple(doc.get("error_llr", ())),
            tuple(doc.get("latency_llr", ())),
            h(doc.get("control_predictions")),
            h(doc.get("arm_predictions")),
            int(doc.get("looks", 0)),
            str(doc.get("failed", "")),
        )


def _hist(h: Histogram | None) -> dict[str, Any] | None:
    return None if h is None else h.to_dict()


@dataclass(frozen=True)
class GuardrailResult:
    version: str
    failed: tuple[str, ...] = ()  # one reason per failed check
    numbers: dict[str, float] = field(default_factory=dict)


def _llr(saved: tuple[float, ...], n: int) -> np.ndarray:
    return np.asarray(saved) if len(saved) == n else np.zeros(n)


def _slow_counts(control: Histogram, arm: Histogram, quantile: float) -> tuple[int, int]:
    """Requests slower than the bucket bound just below the pooled `quantile`."""
    pooled = control + arm
    cum = np.cumsum(pooled.counts)
    i = int(np.searchsorted(cum, quantile * pooled.total, side="left"))
    i = max(min(i, len(pooled.bounds) - 1) - 1, 0)
    return int(sum(control.counts[i + 1 :])), int(sum(arm.counts[i + 1 :]))


def check_arm(
    policy: GuardrailPolicy,
    guard: ArmGuard,
    version: str,
    control: VersionCounters,
    arm: VersionCounters,
    challengers: int,
) -> tuple[GuardrailResult, ArmGuard]:
    """One interval's checks of `arm` against `control` (window deltas of both)."""
    alpha = policy.false_stop_rate / (len(CHECKS) * max(challengers, 1))
    threshold = math.log(1.0 / alpha)
    alts = policy.alternatives
    failed: list[str] = []
    numbers: dict[str, float] = {}
    served = control.requests + arm.requests
    error_llr = _llr(guard.error_llr, len(alts))
    latency_llr = _llr(guard.latency_llr, len(alts))
    if served and arm.requests:
        share = arm.requests / served
        error_llr = error_llr + share_llr_increment(
            arm.errors, control.errors, share, policy.error_rate_tolerance, alts
        )
        if control.latency.total + arm.latency.total:
            slow_c, slow_a = _slow_counts(control.latency, arm.latency, policy.latency_quantile)
            lat_share = arm.latency.total / (control.latency.total + arm.latency.total)
            latency_llr = latency_llr + share_llr_increment(
                slow_a, slow_c, lat_share, policy.latency_tolerance, alts
            )
    for name, llr, what in (
        ("errors", error_llr, f"error rate above {policy.error_rate_tolerance:g}x the control's"),
        (
            "latency",
            latency_llr,
            f"slow-request share above {policy.latency_tolerance:g}x the control's",
        ),
    ):
        ev = log_evidence(llr)
        numbers[f"{name}_log_evidence"] = round(ev, 3)
        if ev >= threshold:
            failed.append(f"{name}: {what} (evidence e^{ev:.1f} >= e^{threshold:.1f})")
    c_pred = (
        control.predictions
        if guard.control_predictions is None
        else guard.control_predictions + control.predictions
    )
    a_pred = (
        arm.predictions
        if guard.arm_predictions is None
        else guard.arm_predictions + arm.predictions
    )
    looks = guard.looks
    if c_pred.total and a_pred.total:
        looks += 1
        dt = divergence_test(
            c_pred.array(),
            a_pred.array(),
            policy.max_prediction_divergence,
            spent_alpha(alpha, looks),
        )
        numbers["psi"] = dt.psi
        if dt.exceeds:
            failed.append(
                f"predictions: PSI {dt.psi:.3f} beyond {policy.max_prediction_divergence:g} "
                f"(chi2 {dt.chi2:.1f} > {dt.critical:.1f})"
            )
    guard = replace(
        guard,
        error_llr=tuple(float(x) for x in error_llr),
        latency_llr=tuple(float(x) for x in latency_llr),
        control_predictions=c_pred,
        arm_predictions=a_pred,
        looks=looks,
        failed=guard.failed or "; ".join(failed),
    )
    return GuardrailResult(version, tuple(failed), numbers), guard


def check_arms(
    policy: GuardrailPolicy,
    guards: dict[str, ArmGuard],
    control: str,
    window: dict[str, VersionCounters],
    *,
    challengers: int | None = None,
) -> tuple[dict[str, GuardrailResult], dict[str, ArmGuard]]:
    """Every challenger in `window` against `control`; an arm without a window keeps its guard.
    `challengers`: how many the experiment started with (the false-stop budget is split over
    them once, so dropping one does not loosen the others' checks); default: those in `guards`."""
    names = [v for v in guards if v != control]
    split = challengers if challengers is not None else len(names)
    results: dict[str, GuardrailResult] = {}
    out = dict(guards)
    if control not in window:
        return results, out
    for version in names:
        if version in window and not guards[version].failed:
            results[version], out[version] = check_arm(
                policy, guards[version], version, window[control], window[version], split
            )
    return results, out
