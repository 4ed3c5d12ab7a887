"""`make demo`: the platform's loop on this machine, as an ordered list of stages.

A stage is a function taking the shared `DemoContext` (settings, registry, console, work dir, and a
results dict the summary reads). Adding a stage is one line in `STAGES`. Each demo run starts from
its own empty registry under the work dir, so it can be re-run any number of times.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mlops_core.registry import ModelRegistry
from mlops_core.settings import Settings
from mlops_demo.canary_rollout import canary_rollout
from mlops_demo.context import DemoContext
from mlops_demo.drift_loop import drift_retrain_loop
from pipelines.local_run import ValidationFailed

Stage = Callable[[DemoContext], None]


def record_training_run(ctx: DemoContext, key: str, title: str, result: dict[str, Any]) -> None:
    drifted = result["validation"]["drifted_columns"]
    ctx.results[key] = {
        "stage": title,
        "outcome": "promoted" if result["promoted"] else "not promoted",
        "version": f"{result['model']} v{result['version']}",
        "champion": f"{result['model']} v{result['champion']}",
        "metric": f"{result['candidate']:.4f}"
        + (f" vs {result['champion_metric']:.4f}" if result["champion_metric"] is not None else ""),
        "drift": ", ".join(drifted) if drifted else "none",
        "why": [r for r in result["reasons"] if not r.endswith(" passed")],
        "seconds": result["seconds"],
    }


def train_v1_on_clean_data(ctx: DemoContext) -> None:
    """v1 on clean synthetic data: no champion yet, so it becomes the first one."""
    result = ctx.train(scenario="clean", seed=0)
    record_training_run(ctx, "v1_clean", "train v1 on clean data", result)


def retrain_on_drifted_data(ctx: DemoContext) -> None:
    """A price rise (covariate shift): drift is reported, the gate weighs it against v1."""
    result = ctx.train(scenario="covariate_shift", seed=1)
    record_training_run(ctx, "covariate_shift", "retrain on drifted data (price rise)", result)


def reject_broken_data(ctx: DemoContext) -> None:
    """Bad data (nulls, wrong types, out-of-range values) fails validation; nothing is registered."""
    before = len(ctx.registry.versions(ctx.settings.model_name))
    start = time.perf_counter()
    try:
        ctx.train(scenario="broken", seed=2)
    except ValidationFailed as e:
        after = len(ctx.registry.versions(ctx.settings.model_name))
        ctx.results["broken"] = {
            "stage": "train on broken data",
            "outcome": "rejected by validation",
            "version": "none" if after == before else f"{after - before} registered (bug!)",
            "champion": f"{ctx.settings.model_name} v{ctx.registry.champion(ctx.settings.model_name)}",
            "metric": "-",
            "drift": "-",
            "why": [f"failing columns: {', '.join(e.failing_columns)}", f"report: {e.report_path}"],
            "seconds": time.perf_counter() - start,
        }
        return
    raise RuntimeError("the broken data passed validation: the validate step is not doing its job")


# The demo, in order: adding a stage is one line here.
STAGES: list[Stage] = [
    train_v1_on_clean_data,
    retrain_on_drifted_data,
    reject_broken_data,
    canary_rollout,
    drift_retrain_loop,
]


def summary_table(ctx: DemoContext) -> Table:
    """One row per stage; a stage's `results` entry may carry any of these keys."""
    table = Table(title="make demo: what happened", show_lines=True)
    columns = ("stage", "outcome", "version", "champion", "metric", "drift", "seconds")
    headers = ("stage", "outcome", "version", "champion after", "ROC AUC (vs champion)")
    for col in (*headers, "drift reported", "s"):
        table.add_column(col, overflow="fold")
    for r in ctx.results.values():
        outcome = str(r.get("outcome", ""))
        style = "green" if outcome == "promoted" else "yellow" if "not" in outcome else "red"
        cells = [str(r.get(c, "")) for c in columns]
        cells[1] = f"[{style}]{outcome}[/{style}]"
        cells[-1] = f"{r['seconds']:.0f}" if "seconds" in r else ""
        table.add_row(*cells)
    return table


def _shown(path: str | Path) -> str:
    """A path as the user types it: relative to the current folder when it lies under it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def next_steps(ctx: DemoContext) -> list[str]:
    """The demo's closing lines: where its models are and the exact commands that use them.

    Every model the demo made is named with its registry, so "v2" is never ambiguous."""
    registry = _shown(ctx.settings.registry_uri)
    lines = [f"registry: {registry} (model {ctx.settings.model_name})"]
    loop = ctx.results.get("drift_loop")
    if loop is not None:
        lines.append(f"the loop's registry: {_shown(loop['registry'])} (model {loop['model']})")
    lines += [
        "next (the commands are in .venv/bin; `source .venv/bin/activate` puts them on your PATH):",
        f"  .venv/bin/mlops registry list --registry {registry}",
        f"  make serve REGISTRY={registry}",
    ]
    return lines


def run_demo(
    settings: Settings, *, rows: int, console: Console, stages: list[Stage] | None = None
) -> DemoContext:
    work_dir = Path(settings.work_dir).resolve() / "demo"
    if work_dir.exists():
        shutil.rmtree(work_dir)  # a fresh registry and runs every time
    work_dir.mkdir(parents=True)
    demo_settings = replace(
        settings, registry_uri=str(work_dir / "registry"), work_dir=str(work_dir)
    )
    ctx = DemoContext(
        settings=demo_settings,
        registry=ModelRegistry(demo_settings.registry_uri),
        console=console,
        work_dir=work_dir,
        rows=rows,
    )
    stages = STAGES if stages is None else stages
    for i, stage in enumerate(stages, 1):
        doc = (stage.__doc__ or stage.__name__).strip().splitlines()[0]
        start = time.perf_counter()
        with console.status(f"[bold]stage {i}/{len(stages)}[/bold] {doc}"):
            stage(ctx)
        console.print(
            f"[green]✓[/green] stage {i}/{len(stages)} {doc} "
            f"[dim]({time.perf_counter() - start:.1f}s)[/dim]"
        )
    console.print(summary_table(ctx))
    for r in ctx.results.values():
        for line in r.get("why", []):
            console.print(f"[bold]{r['stage']}[/bold]: {line}", soft_wrap=True)
    for line in next_steps(ctx):
        console.print(line, soft_wrap=True, highlight=False)
    return ctx
