"""The demo's closing stage, the whole loop: train v1 and serve it; the world drifts; the monitor
sees it; the trigger starts the training pipeline on recent data; v2 goes out as a canary and is
promoted; an HTML report and a terminal summary tell the story.

Everything is real and local: `run_training_locally` (kfp.local) for both runs, the canary router
with `mlops serve` children (each with the drift monitor, label store and prediction log inside),
HTTP traffic from worker threads, labels through the feedback route, the retraining trigger
reading the stable server's drift endpoint, the canary rollout loop (`mlops_demo.canary_rollout.roll_out`). The stage runs
in its own registry and audit folder under the demo's work dir, so "v1" and "v2" are true names.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from mlops_control.audit import audit_request
from mlops_control.retraining.trigger import (
    LocalRunLauncher,
    RetrainingRequest,
    RetrainingTrigger,
    TriggerPolicy,
)
from mlops_control.traffic.router_process import RouterProcess
from mlops_core.errors import MlopsError
from mlops_core.jsonl_log import DecisionLog
from mlops_core.registry import ModelRegistry
from mlops_core.settings import load_settings
from mlops_demo.canary_rollout import DEMO_POLICY, roll_out
from mlops_demo.context import DemoContext
from mlops_demo.loop_report import print_summary, retraining_seconds, write_report
from mlops_demo.loop_result import LoopResult, TimelinePoint
from mlops_demo.loop_traffic import LoopTraffic, Phase, world
from pipelines.local_run import TrainingParams, run_training_locally
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality

# The world over time: prices creep up by 15% while high-ticket customers start to stay.
PHASES: tuple[Phase, ...] = (
    Phase("steady: the world v1 was trained on", price=1.00, concept=0.0, requests=150),
    Phase("prices +5%, behaviour starts to change", price=1.05, concept=0.35, requests=150),
    Phase("prices +10%", price=1.10, concept=0.7, requests=150),
    Phase("prices +15%: the new normal", price=1.15, concept=1.0, requests=300),
)
# Small windows so the demo's few thousand rows show the drift rise and plateau.
MONITOR_ENV = {
    "MLOPS_MONITOR_PANE_ROWS": "200",
    "MLOPS_MONITOR_PANES": "5",
    "MLOPS_MONITOR_MIN_ROWS": "600",
    "MLOPS_MONITOR_INTERVAL_S": "0.5",
}
DEMO_TRIGGER = TriggerPolicy(share_drifted=0.08, sustain_s=1.0)
EVALUATE_EVERY = 25  # requests between two drift evaluations


@contextlib.contextmanager
def environment(overrides: dict[str, str]) -> Iterator[None]:
    """The router and its `mlops serve` children inherit these (monitor windows, audit dir)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_drift(server_url: str, model: str, version: str) -> DriftSnapshot | None:
    doc = httpx.get(f"{server_url}/v1/models/{model}/drift", timeout=30).json()
    snap = doc["latest"].get(version)
    return DriftSnapshot(**snap) if snap else None


def read_quality(server_url: str, model: str, version: str) -> LiveQuality | None:
    doc = httpx.get(f"{server_url}/v1/models/{model}/quality", timeout=30).json()
    q = doc["versions"].get(version)
    return LiveQuality(**q) if q else None


@dataclass
class _LoopRun:
    """The state the loop's stages share: where it writes, what it has learned so far."""

    model: str
    work_dir: Path
    rows: int
    console: Console
    phases: tuple[Phase, ...]
    policy: TriggerPolicy
    registry_uri: str = ""
    audit_dir: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    launcher_done: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.registry_uri, self.audit_dir = str(self.work_dir / "registry"), self.work_dir / "audit"
        self.registry = ModelRegistry(self.registry_uri)
        self.decisions = DecisionLog(self.audit_dir / "decisions.jsonl")
        self.env = MONITOR_ENV | {"MLOPS_AUDIT_DIR": str(self.audit_dir)}
        self.recent_path = self.work_dir / "landing" / "recent.parquet"

    # 1. v1 on the world as it was.
    def train_first_version(self) -> LoopResult:
        t0 = time.perf_counter()
        self.console.print("[bold]loop 1/5[/bold] training v1 on the world as it is (kfp.local)")
        first = run_training_locally(
            TrainingParams(rows=self.rows, scenario="clean", seed=0),
            registry_uri=self.registry_uri,
            model_name=self.model,
            work_dir=self.work_dir,
        )
        v1 = int(first["version"])
        self.decisions.append(
            "version_registered",
            model=self.model,
            version=v1,
            run_id=first["run_id"],
            promoted=first["promoted"],
            reason="initial training",
        )
        result = LoopResult(
            model=self.model,
            registry_uri=self.registry_uri,
            audit_dir=str(self.audit_dir),
            v1=v1,
            phases=self.phases,
            psi_threshold=load_settings().drift_psi,
            trigger_share_drifted=self.policy.share_drifted,
        )
        result.seconds["train_v1"] = time.perf_counter() - t0
        self.console.print(
            f"  v{v1} registered and champion (ROC AUC {first['candidate']:.4f}, "
            f"run {first['run_id']})"
        )
        return result

    def on_retraining_done(
        self, request: RetrainingRequest, outcome: dict[str, Any] | Exception
    ) -> None:
        self.launcher_done["outcome"] = outcome
        if isinstance(outcome, Exception):
            self.decisions.append(
                "retraining_failed",
                model=self.model,
                trigger_id=request.trigger_id,
                error=str(outcome),
            )
            return
        self.decisions.append(
            "retraining_completed",
            model=self.model,
            trigger_id=request.trigger_id,
            run_id=outcome["run_id"],
            version=outcome["version"],
            promoted=outcome["promoted"],
            reasons=outcome["reasons"],
            data_source=str(self.recent_path),
        )

    def land_recent_data(self, trigger_id: str) -> str:
        """The recent labelled data the run trains on: the current world's customers."""
        last = self.phases[-1]
        self.recent_path.parent.mkdir(parents=True, exist_ok=True)
        world(self.rows, price=last.price, concept=last.concept, seed=99).to_parquet(
            self.recent_path
        )
        return str(self.recent_path)

    def build_trigger(self) -> tuple[RetrainingTrigger, LocalRunLauncher]:
        launcher = LocalRunLauncher(
            registry_uri=self.registry_uri,
            work_dir=self.work_dir,
            base_params=TrainingParams(rows=self.rows, seed=1),
            on_done=self.on_retraining_done,
        )
        trigger = RetrainingTrigger(
            self.policy,
            launcher,
            model=self.model,
            decisions=self.decisions,
            data_source=self.land_recent_data,
        )
        return trigger, launcher

    # 2. the world drifts; the monitor watches; the trigger decides.
    def watch_drift(
        self, result: LoopResult, traffic: LoopTraffic, trigger: RetrainingTrigger
    ) -> None:
        t0 = time.perf_counter()
        self.console.print("[bold]loop 2/5[/bold] serving v1; the world drifts (traffic + labels)")
        stable_url = traffic.server_for(str(result.v1))
        assert stable_url is not None
        sent = 0
        for p_index, phase in enumerate(self.phases):
            df = world(
                max(2000, phase.requests * traffic.rows_per_request),
                price=phase.price,
                concept=phase.concept,
                seed=10 + p_index,
            )
            result.phase_starts.append((sent, phase.name))
            for start in range(0, phase.requests, EVALUATE_EVERY):
                n = min(EVALUATE_EVERY, phase.requests - start)
                traffic.send(df, n, offset=start)
                sent += n
                self.evaluate_drift(result, traffic, trigger, stable_url, sent, phase)
        result.seconds["drift"] = time.perf_counter() - t0
        if result.trigger is None:
            raise MlopsError(
                "the monitor never fired the trigger: drift did not stay past the thresholds; "
                f"see {self.audit_dir / 'decisions.jsonl'}"
            )

    def evaluate_drift(
        self,
        result: LoopResult,
        traffic: LoopTraffic,
        trigger: RetrainingTrigger,
        stable_url: str,
        sent: int,
        phase: Phase,
    ) -> None:
        """One look at the stable server's drift and quality, and the trigger's decision on it."""
        v1 = str(result.v1)
        snap = read_drift(stable_url, self.model, v1)
        if snap is None:
            return
        decision = trigger.evaluate(snap, quality=read_quality(stable_url, self.model, v1))
        result.timeline.append(
            TimelinePoint(sent, sent * traffic.rows_per_request, phase.name, snap, decision.action)
        )
        top = sorted(snap.psi.items(), key=lambda kv: -kv[1])[:2]
        self.console.print(
            f"  {sent:4d} requests | {phase.name[:34]:34} | "
            + ", ".join(f"{f} PSI {v:.2f}{'*' if snap.drifted[f] else ''}" for f, v in top)
            + f" | trigger: {decision.action}",
            highlight=False,
        )
        if decision.action == "fired" and result.trigger is None:
            result.trigger, result.trigger_request = decision, sent
            self.console.print(
                f"  [bold yellow]retraining triggered[/bold yellow] ({decision.trigger_id}): "
                f"{decision.reason}",
                soft_wrap=True,
            )
        elif decision.action == "launch_failed":
            raise MlopsError(f"the retraining run could not start: {decision.reason}")

    # 3. the run finishes while v1 keeps serving the drifted world.
    def wait_for_retraining(
        self, result: LoopResult, traffic: LoopTraffic, launcher: LocalRunLauncher, now_world: Any
    ) -> int:
        self.console.print(
            "[bold]loop 3/5[/bold] retraining on recent data (the same pipeline, kfp.local)"
        )
        traffic.start_continuous(now_world)
        while launcher._thread is not None and launcher._thread.is_alive():
            launcher.wait(1.0)
        traffic.stop_continuous()
        result.retrain_done_request = len(traffic.log.sent)
        outcome = self.launcher_done.get("outcome")
        if outcome is None or isinstance(outcome, Exception):
            raise MlopsError(f"the retraining run failed: {outcome}")
        keys = ("version", "promoted", "candidate", "champion_metric", "reasons", "run_id")
        result.retrain = {k: outcome[k] for k in (*keys, "seconds")}
        v1, v2 = result.v1, int(outcome["version"])
        result.v2 = v2
        # The run started when the trigger fired, before this wait: its time is the audit's.
        took = retraining_seconds(self.audit_dir)
        if took is not None:
            result.seconds["retrain"] = took
        verdict = "passed the gate" if outcome["promoted"] else "did NOT pass the gate"
        self.console.print(
            f"  v{v2} registered: ROC AUC {outcome['candidate']:.4f} vs v{v1} "
            f"{outcome['champion_metric']:.4f} on recent data; {verdict}"
        )
        if not outcome["promoted"]:
            raise MlopsError(
                f"v{v2} did not beat v{v1} on recent data ({'; '.join(outcome['reasons'])}); "
                "nothing to roll out"
            )
        return v2

    # 4. v2 as a canary under the drifted traffic; the rollout analysis promotes it.
    def roll_out_canary(
        self, result: LoopResult, traffic: LoopTraffic, router: Any, now_world: Any, v2: int
    ) -> None:

        t0 = time.perf_counter()
        self.console.print(f"[bold]loop 4/5[/bold] v{v2} goes out as a canary (local router)")
        rollout_log = DecisionLog(self.audit_dir / "rollout.jsonl")
        traffic.start_continuous(now_world)
        try:
            with environment(self.env):
                outcome = roll_out(
                    router,
                    self.model,
                    str(v2),
                    policy=DEMO_POLICY,
                    log=rollout_log,
                    console=self.console,
                )
            traffic.refresh_servers()
        finally:
            traffic.stop_continuous()
        decision = outcome.decision
        result.rollout_action = decision.action
        self.decisions.append(
            "rollout_finished",
            model=self.model,
            stable_version=str(result.v1),
            canary_version=str(v2),
            action=decision.action,
            reason=decision.reason,
            log=str(rollout_log.path),
        )
        result.rollout_decisions = rollout_log.read()
        result.seconds["rollout"] = time.perf_counter() - t0
        if decision.action != "promote":
            raise MlopsError(f"the canary v{v2} was rolled back: {decision.reason}")
        if self.registry.champion(self.model) != v2:
            self.registry.set_champion(self.model, v2, reason="canary promoted", actor="canary")
        traffic.drain_labels()
        url = traffic.server_for(str(v2))
        with contextlib.suppress(httpx.HTTPError):
            result.quality[str(v2)] = read_quality(url, self.model, str(v2)) if url else None

    # 5. the record: versions, traffic, an audited prediction.
    def record(self, result: LoopResult, traffic: LoopTraffic) -> None:
        for v in (result.v1, result.v2):
            assert v is not None
            mv = self.registry.get(self.model, v)
            result.versions[v] = {
                "metrics": mv.metrics,
                "run_id": mv.run_id,
                "data_fingerprint": mv.data_fingerprint,
                "data_source": mv.data_source,
            }
        log = traffic.log
        result.requests = len(log.sent)
        result.labels = log.labels_sent
        result.failures = log.failures()
        result.rollout_traffic = [(s.at, s.version) for s in log.sent if s.status == 200]
        v1 = str(result.v1)
        served_by_v1 = next((s for s in log.sent if s.version == v1 and s.status == 200), None)
        if served_by_v1 is not None:
            result.audit_example = audit_request(
                served_by_v1.request_id, audit_dir=self.audit_dir, registry_uri=self.registry_uri
            )


def run_loop(
    *,
    model: str,
    work_dir: Path,
    rows: int,
    console: Console,
    phases: tuple[Phase, ...] = PHASES,
    policy: TriggerPolicy = DEMO_TRIGGER,
) -> LoopResult:
    """The loop end to end; raises MlopsError when a step does not do what the loop needs."""
    loop = _LoopRun(model, work_dir, rows, console, phases, policy)
    result = loop.train_first_version()
    with environment(loop.env):
        router = RouterProcess.start(model, str(result.v1), loop.registry_uri, work_dir / "router")
    traffic = LoopTraffic(router.url, model)
    trigger, launcher = loop.build_trigger()
    try:
        loop.watch_drift(result, traffic, trigger)
        last = phases[-1]
        now_world = world(4000, price=last.price, concept=last.concept, seed=50)
        v2 = loop.wait_for_retraining(result, traffic, launcher, now_world)
        # v1's live quality on the drifted world, before its server is replaced.
        traffic.drain_labels()
        stable_url = traffic.server_for(str(result.v1))
        result.quality[str(result.v1)] = (
            read_quality(stable_url, model, str(result.v1)) if stable_url else None
        )
        loop.roll_out_canary(result, traffic, router, now_world, v2)
    finally:
        traffic.close()
        router.stop()
    loop.record(result, traffic)
    return result


def loop_model_name(model: str) -> str:
    """The loop's model has a name of its own: its v1 and v2 live in the loop's registry and are
    not the v1 and v2 of the demo's first stages."""
    return f"{model}-loop"


def drift_retrain_loop(ctx: DemoContext) -> None:
    """The loop: drift in served traffic triggers retraining; v2 is canaried and promoted."""

    start = time.perf_counter()
    model = loop_model_name(ctx.settings.model_name)
    result = run_loop(
        model=model,
        work_dir=ctx.work_dir / "loop",
        rows=ctx.rows,
        console=ctx.console,
    )
    ctx.console.print("[bold]loop 5/5[/bold] writing the report")
    path = write_report(result, ctx.work_dir / "loop" / "report.html")
    print_summary(result, ctx.console)
    ctx.results["drift_loop"] = {
        "stage": "drift -> retrain -> canary (the loop)",
        "outcome": "promoted" if result.rollout_action == "promote" else result.rollout_action,
        "version": f"{model} v{result.v2}",
        "champion": f"{model} v{result.v2}",
        "model": model,
        "registry": result.registry_uri,
        "metric": f"{result.retrain['candidate']:.4f} vs {result.retrain['champion_metric']:.4f}",
        "drift": ", ".join(result.trigger.reason.split(": ")[-1:]) if result.trigger else "-",
        "why": [result.trigger.reason if result.trigger else "", f"report: {path}"],
        "seconds": time.perf_counter() - start,
    }
