"""The automated rollout loop: read metrics, analyse, move traffic, record; until promote or
rollback. Used by `mlops canary run` (both targets) and the demo.

The first good reading after the loop starts is the baseline; every later reading's difference
from the previous one is one analysis window. Every decision is appended to a JSON-lines log and
handed to the actuator to record (Kubernetes events locally become log lines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import DecisionLog
from serving.canary.actuator import TrafficActuator, TrafficStatus
from serving.canary.analysis import (
    CanaryDecision,
    CanaryState,
    analyze,
    base_error_rate,
    evidence_plan,
)
from serving.canary.policy import RolloutPolicy
from serving.canary.source import MetricsSource
from serving.canary.window import Snapshot, Window


class RolloutError(MlopsError):
    pass


def step_index_for(policy: RolloutPolicy, percent: int) -> int:
    """The policy step a running canary is at (the largest step not above its percent)."""
    at_or_below = [i for i, s in enumerate(policy.steps) if s <= percent]
    return at_or_below[-1] if at_or_below else 0


def format_decision(d: CanaryDecision) -> str:
    parts = []
    for c in d.checks:
        n = c.numbers
        if c.name == "errors":
            detail = f"{n['canary_error_rate']:.2%} vs {n['stable_error_rate']:.2%}"
        elif c.name == "latency" and n:
            p = next((k for k in n if k.startswith("canary_p")), "")
            detail = f"{p[7:-2]} {n[p] * 1000:.1f} vs {n['stable' + p[6:]] * 1000:.1f} ms"
        elif c.name == "predictions" and n:
            detail = f"PSI {n['psi']:.3f}"
        else:
            detail = ""
        parts.append(f"{c.name} {c.status}" + (f" ({detail})" if detail else ""))
    arrow = f"{d.previous_percent}% -> {d.canary_percent}%"
    checks = "; ".join(parts)
    return f"{d.action:<8} {arrow:<11} {checks}{' | ' if checks else ''}{d.reason}"


def _with_base_rate(state: CanaryState, baseline: Snapshot) -> CanaryState:
    """The stable's error rate over its life so far, if it has served anything."""
    served = baseline.stable.requests
    if not served:
        return state
    return replace(state, base_error_rate=baseline.stable.errors / served)


def run_rollout(
    *,
    model: str,
    actuator: TrafficActuator,
    source_for: Callable[[TrafficStatus], MetricsSource],
    policy: RolloutPolicy,
    log: DecisionLog,
    on_decision: Callable[[CanaryDecision, dict[str, Any]], None] | None = None,
    on_plan: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryDecision:
    status = actuator.status()
    if not status.in_progress:
        raise RolloutError(
            f"no canary of {model} is in progress; start one with "
            "`mlops canary start --model NAME --version N`"
        )
    if status.stable_version is None:
        raise RolloutError(
            f"canary v{status.canary_version} of {model} is running but the stable version it is "
            "compared with is not recorded (the InferenceService was changed outside the "
            "platform's writer); roll the canary back and start it with `mlops canary start`"
        )
    stable, canary = str(status.stable_version), str(status.canary_version)
    source = source_for(status)
    state = CanaryState(step_index=step_index_for(policy, status.canary_percent))
    if policy.steps[state.step_index] != status.canary_percent:
        status = actuator.set_canary_percent(policy.steps[state.step_index])
    started = clock()
    baseline: Snapshot | None = None
    while True:
        reading = source.read(model, stable, canary)
        if isinstance(reading, Snapshot) and baseline is None:
            baseline = reading  # counters so far predate this rollout's first window
            state = _with_base_rate(state, baseline)
            # Printed, not logged: every line of the decision log is a decision.
            if on_plan is not None:
                on_plan(evidence_plan(policy, base_error_rate(state)))
            sleep(policy.analysis_interval_s)
            continue
        if isinstance(reading, Snapshot):
            assert baseline is not None
            observation = reading.minus(baseline)
            baseline = reading
        else:
            observation = reading
        decision, state = analyze(policy, state, observation)
        if not decision.final and clock() - started > policy.progress_deadline_s:
            decision = CanaryDecision(
                "rollback",
                f"progress deadline of {policy.progress_deadline_s:.0f} s passed before the "
                f"canary could be verified (last: {decision.reason})",
                0,
                decision.previous_percent,
                decision.checks,
                decision.numbers,
            )
        if decision.action == "step_up":
            status = actuator.set_canary_percent(decision.canary_percent)
        elif decision.action == "promote":
            status = actuator.promote()
        elif decision.action == "rollback":
            status = actuator.rollback()
        actuator.record(decision, status)
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": model,
            "stable_version": stable,
            "canary_version": canary,
            "decision": decision.to_dict(),
            "observed_canary_percent": status.observed_canary_percent,
            "window": observation.to_dict()
            if isinstance(observation, Window)
            else {type(observation).__name__: observation.detail},
        }
        log.append("canary_decision", **entry)
        if on_decision is not None:
            on_decision(decision, entry)
        if decision.final:
            return decision
        sleep(policy.analysis_interval_s)
