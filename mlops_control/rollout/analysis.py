"""The analysis engine: one window of metrics in, one decision out. Pure: no I/O, no clock.

`analyze(policy, state, observation)` returns the `CanaryDecision` (step up, hold, promote or roll
back, with every check's numbers and a reason) and the next `CanaryState`. The state carries the
sequential tests' evidence across windows and steps, so a rollout can be resumed from its JSON.

Checks (see `sequential` for the statistics):
- errors: mSPRT on the canary's share of 5xx responses, null "canary error rate <= tolerance x
  stable's";
- latency: mSPRT on the canary's share of requests slower than the stable-and-canary pooled
  `latency_quantile` bucket bound (p99 by default), null "<= tolerance x stable's share";
- predictions: non-central chi-square test that the PSI between the predicted-probability
  distributions exceeds `max_prediction_divergence`.
The rollout's false-rollback budget (`false_rollback_rate`) is split over the three
(`RolloutPolicy.check_alpha`: evenly, or half for errors when the policy aims at an error ratio).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.sequential import (
    divergence_test,
    log_evidence,
    requests_for_power,
    share_llr_increment,
    spent_alpha,
)
from mlops_control.rollout.window import Histogram, Window

Action = Literal["step_up", "hold", "promote", "rollback"]
CheckStatus = Literal["pass", "fail", "waiting"]
CHECKS = ("errors", "latency", "predictions")


@dataclass(frozen=True)
class NoData:
    """The source answered, but one version has no series yet (not scraped, no traffic)."""

    detail: str


@dataclass(frozen=True)
class SourceFailed:
    """The source could not be read (unreachable, HTTP error, malformed answer)."""

    detail: str


Observation = Window | NoData | SourceFailed


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: CheckStatus
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CanaryDecision:
    action: Action
    reason: str
    canary_percent: int  # the traffic share the canary has after this decision
    previous_percent: int
    checks: tuple[CheckResult, ...] = ()
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.action in ("promote", "rollback")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = [asdict(c) for c in self.checks]
        return d


@dataclass(frozen=True)
class CanaryState:
    step_index: int = 0
    step_canary_requests: int = 0
    analyses: int = 0
    failed_in_a_row: int = 0
    error_llr: tuple[float, ...] = ()
    latency_llr: tuple[float, ...] = ()
    stable_total: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0})
    canary_total: dict[str, int] = field(default_factory=lambda: {"requests": 0, "errors": 0})
    # Cumulative histograms of the rollout so far (None until the first window with data).
    stable_latency: Histogram | None = None
    canary_latency: Histogram | None = None
    stable_predictions: Histogram | None = None
    canary_predictions: Histogram | None = None
    divergence_looks: int = 0
    # Canary requests served in the warm-up (see RolloutPolicy.warmup_requests).
    warmup_served: int = 0
    # The stable's error rate before the rollout (its lifetime counters at the first reading),
    # used to size the evidence per step until the rollout has seen errors of its own.
    base_error_rate: float | None = None
    done: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            d[k] = v.to_dict() if isinstance(v, Histogram) else v
        d["error_llr"] = list(self.error_llr)
        d["latency_llr"] = list(self.latency_llr)
        return d

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CanaryState:
        kw = dict(doc)
        for k in ("stable_latency", "canary_latency", "stable_predictions", "canary_predictions"):
            if kw.get(k) is not None:
                kw[k] = Histogram.from_dict(kw[k])
        kw["error_llr"] = tuple(kw.get("error_llr", ()))
        kw["latency_llr"] = tuple(kw.get("latency_llr", ()))
        return cls(**kw)


def _percent(policy: RolloutPolicy, state: CanaryState) -> int:
    return policy.steps[min(state.step_index, len(policy.steps) - 1)]


def _add(h: Histogram | None, delta: Histogram) -> Histogram:
    return delta if h is None else h + delta


def _slow_bound(pooled: Histogram, quantile: float) -> tuple[int, float]:
    """The bucket bound just below the pooled `quantile`: index and value (seconds).

    Requests above it are "slow". Taking the lower edge of the bucket that holds the quantile
    keeps the slow share at or above 1 - quantile despite coarse buckets, so the test has events
    to work with. The pooled histogram is used because, when the versions are equal, the canary
    labels are exchangeable given it, which keeps the test's error bound.
    """
    cum = np.cumsum(pooled.counts)
    i = int(np.searchsorted(cum, quantile * pooled.total, side="left"))
    last_finite = (
        len(pooled.bounds) - 2 if pooled.bounds[-1] == math.inf else len(pooled.bounds) - 1
    )
    i = max(min(i, last_finite + 1) - 1, 0)
    return i, pooled.bounds[i]


def _rate_check(
    name: str,
    llr: np.ndarray,
    alpha: float,
    numbers: dict[str, float],
    what: str,
    tolerance: float,
    weights: tuple[float, ...] | None = None,
) -> CheckResult:
    ev = log_evidence(llr, weights)
    threshold = math.log(1.0 / alpha)
    numbers = numbers | {"log_evidence": round(ev, 3), "log_threshold": round(threshold, 3)}
    ratio = numbers.get("ratio", float("nan"))
    if ev >= threshold:
        return CheckResult(
            name,
            "fail",
            f"canary {what} is above {tolerance:g}x the stable's "
            f"(observed ratio {ratio:.2f}, evidence e^{ev:.1f} >= 1/alpha = e^{threshold:.1f})",
            numbers,
        )
    return CheckResult(
        name,
        "pass",
        f"no evidence that the canary's {what} exceeds {tolerance:g}x the stable's "
        f"(observed ratio {ratio:.2f}, evidence e^{ev:.1f} < e^{threshold:.1f})",
        numbers,
    )


def _ratio(c_events: int, c_n: int, s_events: int, s_n: int) -> float:
    if c_n == 0 or s_n == 0:
        return float("nan")
    c, s = c_events / c_n, s_events / s_n
    if s == 0:
        return float("inf") if c > 0 else 1.0
    return c / s


def analyze(
    policy: RolloutPolicy, state: CanaryState, observation: Observation
) -> tuple[CanaryDecision, CanaryState]:
    """Decide what to do after one analysis window."""
    if state.done is not None:
        raise ValueError(f"the rollout already ended with {state.done}; start a new one")
    without_window = _hold_without_a_window(policy, state, observation)
    if without_window is not None:
        return without_window
    assert isinstance(observation, Window)
    w = observation
    # A server that restarted in the window served all of it cold (a new process, as a new
    # canary's first requests are): the window is a warm-up, whichever side restarted.
    warming = state.warmup_served < policy.warmup_requests or bool(w.restarted)
    errors, state = _check_errors(policy, state, w, policy.check_alpha("errors"))
    if w.restarted:
        latency = CheckResult(
            "latency",
            "waiting",
            f"the {' and '.join(w.restarted)} server restarted in this window: its requests "
            "since are left out, as a warm-up",
        )
    elif warming:
        latency = CheckResult(
            "latency",
            "waiting",
            f"warming up: the canary's first {policy.warmup_requests} requests are left out "
            f"({state.warmup_served + w.canary.requests} served)",
        )
    else:
        latency, state = _check_latency(policy, state, w, policy.check_alpha("latency"))
    predictions, state = _check_predictions(policy, state, w, policy.check_alpha("predictions"))
    state = replace(state, analyses=state.analyses + 1, failed_in_a_row=0)
    if warming:
        state = replace(state, warmup_served=state.warmup_served + w.canary.requests)
    else:
        state = replace(state, step_canary_requests=state.step_canary_requests + w.canary.requests)
    return _decide(policy, state, w, (errors, latency, predictions), warming=warming)


def base_error_rate(state: CanaryState) -> float:
    """The stable's error rate the evidence is sized for: the rollout's own count once it has a
    few errors, else the rate before the rollout, else a Jeffreys-style estimate."""
    errors, requests = state.stable_total["errors"], state.stable_total["requests"]
    if errors >= 10 or not state.base_error_rate:
        return (errors + 0.5) / (requests + 1.0)
    return state.base_error_rate


def required_requests(policy: RolloutPolicy, percent: int, base_rate: float) -> int:
    """Canary requests a step at `percent` must serve: the policy's minimum, and, with a
    `detect_error_ratio`, what catching that ratio with `power` needs at `base_rate`."""
    if policy.detect_error_ratio is None or percent >= 100:
        return policy.min_requests_per_step
    needed = requests_for_power(
        base_rate=base_rate,
        canary_share=percent / 100.0,
        tolerance=policy.error_rate_tolerance,
        ratio=policy.detect_error_ratio,
        alpha=policy.check_alpha("errors"),
        power=policy.power,
        aim_weight=policy.error_weights[0]
        if policy.error_weights
        else 1.0 / len(policy.error_alternatives),
    )
    return max(policy.min_requests_per_step, needed)


def evidence_plan(policy: RolloutPolicy, state: CanaryState) -> str:
    """One line naming the canary requests each step needs (printed when a rollout starts).

    Honest about what it knows: with no stable traffic seen yet there is no observed error rate,
    and the line says so instead of naming the prior estimate as if it were observed."""
    steps = [s for s in policy.steps if s < 100]
    warmup = f"(plus a {policy.warmup_requests}-request warm-up)"
    observed = state.base_error_rate is not None or state.stable_total["requests"] > 0
    if policy.detect_error_ratio is None:
        return (
            f"needs at least {policy.min_requests_per_step} canary requests at each of "
            f"{', '.join(f'{s}%' for s in steps)} {warmup}"
        )
    aim = (
        f"to catch {policy.detect_error_ratio:g}x the stable's errors with {policy.power:.0%} power"
    )
    if not observed:
        return (
            f"needs at least {policy.min_requests_per_step} canary requests per step {warmup}; "
            f"no base error rate observed yet (the stable has served no requests), so the "
            f"evidence {aim} is sized once it has"
        )
    rate = base_error_rate(state)
    per_step = ", ".join(f"by {s}%: {required_requests(policy, s, rate)}" for s in steps)
    return (
        f"needs about {per_step} canary requests in the rollout {aim} at the stable's error "
        f"rate of about {rate:.2%} {warmup}"
    )


def _hold_without_a_window(
    policy: RolloutPolicy, state: CanaryState, observation: Observation
) -> tuple[CanaryDecision, CanaryState] | None:
    """The decision when there is nothing to analyse: a failed read, no data, no canary traffic."""
    percent = _percent(policy, state)
    if isinstance(observation, SourceFailed):
        failed = state.failed_in_a_row + 1
        state = replace(state, failed_in_a_row=failed, analyses=state.analyses + 1)
        if failed >= policy.max_failed_analyses:
            return _end(
                state,
                "rollback",
                f"metrics could not be read in {failed} analyses in a row "
                f"({observation.detail}); the canary cannot be verified",
                percent,
            )
        return CanaryDecision(
            "hold",
            f"metrics source failed ({failed}/{policy.max_failed_analyses}): {observation.detail}",
            percent,
            percent,
        ), state
    if isinstance(observation, NoData):
        state = replace(state, failed_in_a_row=0, analyses=state.analyses + 1)
        return CanaryDecision("hold", f"no data yet: {observation.detail}", percent, percent), state
    if observation.canary.requests == 0:
        state = replace(state, failed_in_a_row=0, analyses=state.analyses + 1)
        return CanaryDecision(
            "hold",
            f"no canary requests in this window (stable served {observation.stable.requests}); "
            "waiting for traffic",
            percent,
            percent,
        ), state
    return None


def _llr(saved: tuple[float, ...], alternatives: tuple[float, ...]) -> np.ndarray:
    # A state saved under other alternatives (a controller upgraded mid-rollout) starts afresh.
    if len(saved) != len(alternatives):
        return np.zeros(len(alternatives))
    return np.asarray(saved)


def _check_errors(
    policy: RolloutPolicy, state: CanaryState, w: Window, alpha: float
) -> tuple[CheckResult, CanaryState]:
    """mSPRT on the canary's share of 5xx responses."""
    n_c, n_s = w.canary.requests, w.stable.requests
    error_llr = _llr(state.error_llr, policy.error_alternatives) + share_llr_increment(
        w.canary.errors,
        w.stable.errors,
        n_c / (n_c + n_s),
        policy.error_rate_tolerance,
        policy.error_alternatives,
    )
    stable_total = {
        "requests": state.stable_total["requests"] + n_s,
        "errors": state.stable_total["errors"] + w.stable.errors,
    }
    canary_total = {
        "requests": state.canary_total["requests"] + n_c,
        "errors": state.canary_total["errors"] + w.canary.errors,
    }
    numbers = {
        "canary_error_rate": canary_total["errors"] / max(canary_total["requests"], 1),
        "stable_error_rate": stable_total["errors"] / max(stable_total["requests"], 1),
        "canary_errors": canary_total["errors"],
        "stable_errors": stable_total["errors"],
        "ratio": _ratio(
            canary_total["errors"],
            canary_total["requests"],
            stable_total["errors"],
            stable_total["requests"],
        ),
    }
    check = _rate_check(
        "errors",
        error_llr,
        alpha,
        numbers,
        "error rate",
        policy.error_rate_tolerance,
        policy.error_weights,
    )
    state = replace(
        state,
        error_llr=tuple(float(x) for x in error_llr),
        stable_total=stable_total,
        canary_total=canary_total,
    )
    return check, state


def _check_latency(
    policy: RolloutPolicy, state: CanaryState, w: Window, alpha: float
) -> tuple[CheckResult, CanaryState]:
    """mSPRT on the canary's share of requests slower than the pooled `latency_quantile`."""
    stable_latency = _add(state.stable_latency, w.stable.latency)
    canary_latency = _add(state.canary_latency, w.canary.latency)
    state = replace(state, stable_latency=stable_latency, canary_latency=canary_latency)
    window_pooled = w.stable.latency + w.canary.latency
    if not window_pooled.total:
        return CheckResult("latency", "waiting", "no latency observations yet"), state
    i, bound = _slow_bound(stable_latency + canary_latency, policy.latency_quantile)
    if bound < policy.latency_floor_s:
        bounds = stable_latency.bounds
        i = min(int(np.searchsorted(bounds, policy.latency_floor_s, side="left")), len(bounds) - 1)
        bound = bounds[i]
    slow_c = int(sum(w.canary.latency.counts[i + 1 :]))
    slow_s = int(sum(w.stable.latency.counts[i + 1 :]))
    latency_llr = _llr(state.latency_llr, policy.sequential_alternatives) + share_llr_increment(
        slow_c,
        slow_s,
        w.canary.latency.total / window_pooled.total,
        policy.latency_tolerance,
        policy.sequential_alternatives,
    )
    q = policy.latency_quantile
    c_slow_total = int(sum(canary_latency.counts[i + 1 :]))
    s_slow_total = int(sum(stable_latency.counts[i + 1 :]))
    numbers = {
        f"canary_p{round(q * 100):d}_s": float(canary_latency.quantile(q)),
        f"stable_p{round(q * 100):d}_s": float(stable_latency.quantile(q)),
        "slow_bound_s": bound,
        "canary_slow_share": c_slow_total / max(canary_latency.total, 1),
        "stable_slow_share": s_slow_total / max(stable_latency.total, 1),
        "ratio": _ratio(c_slow_total, canary_latency.total, s_slow_total, stable_latency.total),
    }
    check = _rate_check(
        "latency",
        latency_llr,
        alpha,
        numbers,
        "share of slow requests",
        policy.latency_tolerance,
    )
    return check, replace(state, latency_llr=tuple(float(x) for x in latency_llr))


def _check_predictions(
    policy: RolloutPolicy, state: CanaryState, w: Window, alpha: float
) -> tuple[CheckResult, CanaryState]:
    """Is the PSI between the predicted-probability distributions above the tolerance?"""
    stable_pred = _add(state.stable_predictions, w.stable.predictions)
    canary_pred = _add(state.canary_predictions, w.canary.predictions)
    state = replace(state, stable_predictions=stable_pred, canary_predictions=canary_pred)
    if not (stable_pred.total and canary_pred.total):
        return CheckResult("predictions", "waiting", "no predictions observed yet"), state
    looks = state.divergence_looks + 1
    state = replace(state, divergence_looks=looks)
    dt = divergence_test(
        stable_pred.array(),
        canary_pred.array(),
        policy.max_prediction_divergence,
        spent_alpha(alpha, looks),
    )
    numbers = {
        "psi": dt.psi,
        "chi2": dt.chi2,
        "chi2_critical": dt.critical,
        "df": dt.df,
        "canary_rows": canary_pred.total,
        "stable_rows": stable_pred.total,
    }
    if dt.exceeds:
        reason = (
            f"canary predictions diverge from the stable's beyond PSI "
            f"{policy.max_prediction_divergence:g} (PSI {dt.psi:.3f}, chi2 {dt.chi2:.1f} > "
            f"{dt.critical:.1f})"
        )
        return CheckResult("predictions", "fail", reason, numbers), state
    reason = (
        f"predictions within tolerance (PSI {dt.psi:.3f}, chi2 {dt.chi2:.1f} <= {dt.critical:.1f})"
    )
    return CheckResult("predictions", "pass", reason, numbers), state


def _decide(
    policy: RolloutPolicy,
    state: CanaryState,
    w: Window,
    checks: tuple[CheckResult, ...],
    *,
    warming: bool = False,
) -> tuple[CanaryDecision, CanaryState]:
    """Roll back on a failed check; else hold through the warm-up and until the step has its
    requests; else step up or promote."""
    percent = _percent(policy, state)
    step_requests = state.step_canary_requests
    required = required_requests(policy, percent, base_error_rate(state))
    numbers: dict[str, float] = {
        "window_canary_requests": w.canary.requests,
        "window_stable_requests": w.stable.requests,
        "step_canary_requests": step_requests,
        "min_requests_per_step": policy.min_requests_per_step,
        "required_canary_requests": required,
        "rollout_canary_requests": state.canary_total["requests"] - state.warmup_served,
    }
    failed = [c for c in checks if c.status == "fail"]
    if failed:
        reason = "; ".join(f"{c.name}: {c.reason}" for c in failed)
        return _end(state, "rollback", reason, percent, checks, numbers)
    if warming:
        why = (
            f"the {' and '.join(w.restarted)} server restarted: this window is left out of the "
            "latency check"
            if w.restarted
            else f"warming up ({state.warmup_served}/{policy.warmup_requests} canary requests "
            "left out of the latency check)"
        )
        return CanaryDecision(
            "hold",
            f"checks pass; {why} at {percent}%",
            percent,
            percent,
            checks,
            numbers,
        ), state
    # The power requirement counts the rollout's evidence so far (it accumulates over steps);
    # the per-step minimum makes every step watch the canary at its own share.
    evidence = state.canary_total["requests"] - state.warmup_served
    if step_requests < policy.min_requests_per_step or evidence < required:
        return CanaryDecision(
            "hold",
            f"checks pass; canary served {step_requests}/{policy.min_requests_per_step} requests "
            f"at {percent}%"
            + (
                f", {evidence}/{required} in the rollout for the evidence the policy asks"
                if required > policy.min_requests_per_step
                else ""
            ),
            percent,
            percent,
            checks,
            numbers,
        ), state
    nxt = state.step_index + 1
    if policy.steps[nxt] >= 100:
        return _end(
            state,
            "promote",
            f"every check passed at each step up to {percent}% "
            f"({state.canary_total['requests']} canary requests in all)",
            percent,
            checks,
            numbers,
        )
    state = replace(state, step_index=nxt, step_canary_requests=0)
    return CanaryDecision(
        "step_up",
        f"every check passed at {percent}% over {step_requests} canary requests",
        policy.steps[nxt],
        percent,
        checks,
        numbers,
    ), state


def _end(
    state: CanaryState,
    action: Action,
    reason: str,
    percent: int,
    checks: tuple[CheckResult, ...] = (),
    numbers: dict[str, float] | None = None,
) -> tuple[CanaryDecision, CanaryState]:
    to = 0 if action == "rollback" else 100
    return CanaryDecision(action, reason, to, percent, checks, dict(numbers or {})), replace(
        state, done=action
    )
