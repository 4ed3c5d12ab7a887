"""The demo's rollout stage: a good new version goes out as a canary under generated traffic and
is promoted; then a deliberately bad version (trained on inverted labels: its predictions are
shifted, a real and honest failure) goes out and is rolled back automatically. The stable version
serves throughout; every decision is printed with its numbers and kept as JSON lines.

Everything is real: the local router process (`mlops canary router`) with its `mlops serve`
children, HTTP traffic from worker threads, the servers' /metrics, the same rollout loop as
`mlops canary run`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from components.train import TrainParams, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import DecisionLog
from mlops_core.registry import ModelRegistry
from mlops_demo.context import DemoContext
from serving.canary.actuator import Target, new_actuator
from serving.canary.analysis import CanaryDecision
from serving.canary.model_server_process import (
    free_port,
    mlops_executable,
    wait_for_http_ready,
)
from serving.canary.policy import RolloutPolicy
from serving.canary.rollout import format_decision, run_rollout
from serving.canary.source import new_source
from serving.canary.traffic import TrafficGenerator, TrafficTally

# Fast enough for `make demo`: short windows, a modest minimum per step.
DEMO_POLICY = RolloutPolicy(analysis_interval_s=2.0, min_requests_per_step=100)


@dataclass
class RouterProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(
        cls, model: str, version: str, registry_uri: str, work_dir: Path, timeout_s: float = 120
    ) -> RouterProcess:
        port = free_port()
        work_dir.mkdir(parents=True, exist_ok=True)
        log = work_dir / "router.log"
        cmd = [*mlops_executable(), "canary", "router", "--model", model, "--version", version]
        cmd += ["--registry", registry_uri, "--port", str(port)]
        env = {**os.environ, "MLOPS_WORK_DIR": str(work_dir)}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_for_http_ready(
            f"{url}/router/state", proc, log, timeout_s=timeout_s, what="the local router"
        )
        return cls(url, proc, log)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class RolloutOutcome:
    stable_version: str
    canary_version: str
    decision: CanaryDecision
    decisions: list[CanaryDecision] = field(default_factory=list)
    seconds: float = 0.0


def train_and_register(
    registry: ModelRegistry,
    model: str,
    *,
    rows: int,
    seed: int,
    invert_labels: bool = False,
    estimator: str = "logistic_regression",
) -> int:
    """Train on the project's generator and register; `invert_labels` makes the bad version."""
    df = generate_churn(rows, seed=seed)
    if invert_labels:
        df[CHURN_SCHEMA.target] = 1 - df[CHURN_SCHEMA.target].astype(int)
    result = train_model(
        df, CHURN_SCHEMA, TrainParams(estimator=estimator, seed=seed, n_estimators=100)
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.skops")
        save_model(result.pipeline, path)
        mv = registry.register(
            model,
            path,
            schema=CHURN_SCHEMA,
            reference=profile_reference(df, CHURN_SCHEMA),
            params=result.params,
            estimator=estimator,
            data_source=f"generate_churn(rows={rows}, seed={seed})",
            tags={"purpose": "canary demo: trained on inverted labels (a bad version)"}
            if invert_labels
            else {},
        )
    return mv.version


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
            "stage": f"canary rollout of v{o.canary_version} ({label})",
            "outcome": {"promote": "promoted", "rollback": "rolled back"}[o.decision.action],
            "version": f"v{o.canary_version}",
            "champion": f"v{reg.champion(model)}",
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
