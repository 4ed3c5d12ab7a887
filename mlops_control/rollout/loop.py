"""The automated rollout loop: read metrics, analyse, move traffic, record; until promote or
rollback. Used by `mlops canary run` (both targets) and the demo.

The first good reading after the loop starts is the baseline; every later reading's difference
from the previous one is one analysis window. Every decision is appended to a JSON-lines log and
handed to the actuator to record (Kubernetes events locally become log lines).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mlops_control.rollout.analysis import CanaryDecision
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.source import MetricsSource, read_safely
from mlops_control.rollout.window import Window
from mlops_control.strategies import ReleaseStrategy
from mlops_control.strategies.canary import CanaryStrategy
from mlops_control.traffic.actuator import TrafficActuator, TrafficStatus
from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import DecisionLog


class RolloutError(MlopsError):
    pass


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
    strategy: ReleaseStrategy | None = None,
) -> CanaryDecision:
    """Run a release to its end (the canary by default, under `policy`); return the last
    decision."""
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
    release: ReleaseStrategy = strategy or CanaryStrategy(policy)
    source = source_for(status)
    progress = release.begin(status.canary_percent, clock())
    if release.target_percent(progress) != status.canary_percent:
        status = actuator.set_canary_percent(release.target_percent(progress))
    while True:
        reading = read_safely(source, model, stable, canary)
        result = release.step(progress, reading, clock())
        progress, decision = result.progress, result.decision
        if decision is None:  # the baseline: counters so far predate this rollout's first window
            # Printed, not logged: every line of the decision log is a decision.
            if on_plan is not None:
                on_plan(release.plan(progress))
            sleep(release.analysis_interval_s)
            continue
        status = carry_out(actuator, decision, status)
        actuator.record(decision, status)
        observation = result.observation
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": model,
            "stable_version": stable,
            "canary_version": canary,
            "decision": decision.to_dict(),
            "observed_canary_percent": status.observed_canary_percent,
            "window": observation.to_dict()
            if isinstance(observation, Window)
            else {type(observation).__name__: getattr(observation, "detail", "")},
        }
        log.append("canary_decision", **entry)
        if on_decision is not None:
            on_decision(decision, entry)
        if decision.final:
            return decision
        sleep(release.analysis_interval_s)


def carry_out(
    actuator: TrafficActuator, decision: CanaryDecision, status: TrafficStatus
) -> TrafficStatus:
    """Move traffic as `decision` says; a hold moves nothing and keeps `status`."""
    if decision.action == "step_up":
        return actuator.set_canary_percent(decision.canary_percent)
    if decision.action == "promote":
        return actuator.promote()
    if decision.action == "rollback":
        return actuator.rollback()
    return status
