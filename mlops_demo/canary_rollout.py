"""The demo's rollout stage: a good new version goes out as a canary under generated traffic and
is promoted; then a deliberately bad version (trained on inverted labels: its predictions are
shifted, a real and honest failure) goes out and is rolled back automatically. The stable version
serves throughout; every decision is printed with its numbers and kept as JSON lines.

Everything is real: the local router process (`mlops canary router`) with its `mlops serve`
children, HTTP traffic from worker threads, the servers' /metrics, the same rollout loop as
`mlops canary run`.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mlops_control.rollout.analysis import CanaryDecision
from mlops_control.rollout.factory import new_actuator, new_source
from mlops_control.rollout.loop import format_decision, run_rollout
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.traffic.actuator import Target
from mlops_control.traffic.router_process import RouterProcess
from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import DecisionLog
from mlops_demo.canary_traffic import TrafficGenerator, TrafficTally
from mlops_demo.context import DemoContext
from mlops_demo.train_and_register import train_and_register

# Fast enough for `make demo`: short windows, a modest minimum per step.
# Latency under a quarter second is not slow to anyone at a demo: on a busy laptop (or CI box)
# the two local servers' p99s differ by noise alone (a freshly started canary on a loaded 2-core
# machine: p99 196 ms vs the stable's 22 ms), which rolled back good canaries; slower ones fail.
DEMO_POLICY = RolloutPolicy(
    analysis_interval_s=2.0, min_requests_per_step=100, latency_floor_s=0.25
)


@dataclass
class RolloutOutcome:
    stable_version: str
    canary_version: str
    decision: CanaryDecision
    decisions: list[CanaryDecision] = field(default_factory=list)
    seconds: float = 0.0


def roll_out(
    router: RouterProcess,
    model: str,
    version: str,
    *,
    policy: RolloutPolicy,
    log: DecisionLog,
    console: Console,
) -> RolloutOutcome:
    """Start `version` as the canary behind the running router and run the loop to its end."""
    actuator = new_actuator(Target.local, model=model, router_url=router.url)
    stable = str(actuator.status().stable_version)
    actuator.start(version, policy.first_step)
    decisions: list[CanaryDecision] = []

    def show(d: CanaryDecision, _: dict[str, Any]) -> None:
        decisions.append(d)
        console.print(
            f"  v{stable} -> v{version}: {format_decision(d)}", soft_wrap=True, markup=False
        )

    started = time.perf_counter()
    final = run_rollout(
        model=model,
        actuator=actuator,
        source_for=lambda st: new_source(Target.local, status=st),
        policy=policy,
        log=log,
        on_decision=show,
    )
    return RolloutOutcome(stable, version, final, decisions, time.perf_counter() - started)


def run_local_rollouts(
    *,
    registry_uri: str,
    model: str,
    stable_version: str,
    canary_versions: list[str],
    work_dir: Path,
    console: Console,
    policy: RolloutPolicy = DEMO_POLICY,
    traffic_workers: int = 4,
) -> tuple[list[RolloutOutcome], TrafficTally]:
    """One router and one traffic stream; each canary in turn rolled out to its end."""
    log = DecisionLog(work_dir / "decisions.jsonl")
    router = RouterProcess.start(model, stable_version, registry_uri, work_dir)
    outcomes = []
    try:
        with TrafficGenerator(router.url, model, workers=traffic_workers) as traffic:
            for version in canary_versions:
                outcomes.append(
                    roll_out(router, model, version, policy=policy, log=log, console=console)
                )
    finally:
        code = router.stop()
        if code not in (0, -signal.SIGTERM):
            console.print(f"[yellow]router exited with {code}; log {router.log}[/yellow]")
    return outcomes, traffic.tally


def canary_rollout(ctx: DemoContext) -> None:
    """Canary rollout: the new version is promoted under traffic, a bad one is rolled back."""
    reg, model = ctx.registry, ctx.settings.model_name
    doc = reg.champion_doc(model)
    champion = doc["version"]
    if champion is None:
        raise MlopsError("the rollout stage needs a champion; the training stages come first")
    # The stable is the first champion; the canary the newest champion (or, if the pipeline kept
    # the first, a fresh retrain of it).
    stable = next((h["version"] for h in doc["history"]), champion)
    # A fresh retrain uses the stable's estimator: an honest new version of the same model.
    estimator = reg.get(model, stable).estimator or "xgboost"
    good = (
        champion
        if champion != stable
        else train_and_register(reg, model, rows=ctx.rows, seed=21, estimator=estimator)
    )
    bad = train_and_register(reg, model, rows=ctx.rows, seed=22, invert_labels=True)
    work = ctx.work_dir / "canary"
    ctx.console.print(
        f"rollout: stable v{stable}; canary v{good} (good), then v{bad} (inverted labels); "
        f"decisions -> {work / 'decisions.jsonl'}"
    )
    start = time.perf_counter()
    outcomes, tally = run_local_rollouts(
        registry_uri=ctx.settings.registry_uri,
        model=model,
        stable_version=str(stable),
        canary_versions=[str(good), str(bad)],
        work_dir=work,
        console=ctx.console,
    )
    first, second = outcomes
    if first.decision.action == "promote" and str(reg.champion(model)) != first.canary_version:
        reg.set_champion(model, int(first.canary_version), reason="canary promoted", actor="canary")
    stable_failures = tally.failures("stable") + tally.transport_errors
    for key, o, label in (("canary_good", first, "good"), ("canary_bad", second, "bad")):
        ctx.results[key] = {
            "stage": f"canary rollout of {model} v{o.canary_version} ({label})",
            "outcome": {"promote": "promoted", "rollback": "rolled back"}[o.decision.action],
            "version": f"{model} v{o.canary_version}",
            "champion": f"{model} v{reg.champion(model)}",
            "metric": "-",
            "drift": "-",
            "why": [o.decision.reason],
            "seconds": o.seconds,
        }
    ctx.results["canary_bad"]["why"].append(
        f"traffic: {tally.served()} requests, {tally.failures('stable')} 5xx on the stable path, "
        f"{tally.transport_errors} transport errors; {tally.summary()}"
    )
    if first.decision.action != "promote" or second.decision.action != "rollback":
        raise MlopsError(
            f"rollout stage: expected promote then rollback, got {first.decision.action} then "
            f"{second.decision.action}; see {work / 'decisions.jsonl'}"
        )
    if stable_failures:
        raise MlopsError(f"{stable_failures} requests failed on the stable path; see {work}")
    ctx.console.print(f"rollouts took {time.perf_counter() - start:.0f} s")
