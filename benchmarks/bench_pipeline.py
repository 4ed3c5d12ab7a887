"""Benchmark: the local training pipeline's wall time, split into compute and orchestration.

For each row count, one kfp.local run (SubprocessRunner, fresh registry) of the real pipeline.
Compute = time spent inside the plain step functions (recorded by `mlops_core.step_timing` in the
task subprocesses); orchestration overhead = wall time - compute (task subprocess start, Python and
library imports, KFP executor, artifact bookkeeping). Target: overhead <= 50% of compute at 100k.

Each size runs twice, back to back: "fresh" (a new interpreter per task, as kfp.local does by
default) and "fork" (each task forked from one pre-warmed server, `pipelines.task_forkserver`).

Also measured in the same run, to say where the overhead goes: the cost of starting one task's
interpreter with KFP's executor and with the project's step modules imported.

    python benchmarks/bench_pipeline.py --rows 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlops_core.step_timing import ENV_VAR, read_timings
from pipelines.local_run import TrainingParams, run_training_locally

TARGET_RATIO = 0.50  # issue 15 (was 20%)
STEPS = ("ingest", "validate", "train", "evaluate", "gate", "register")
STEP_MODULES = {
    "ingest": "components.ingest",
    "validate": "components.validate",
    "train": "components.train",
    "evaluate": "components.evaluate",
    "gate": "components.gate",
    "register": "components.register",
}


def interpreter_start(imports: str, repeats: int = 3) -> float:
    """Best-of-n seconds to start Python and import `imports` (a task's fixed cost)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", imports], check=True)
        best = min(best, time.perf_counter() - start)
    return best


_TASK_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) - \w+ - (?:Executing task '([\w-]+)'|Task '([\w-]+)' finished)"
)


def task_walls(log: Path) -> dict[str, float]:
    """Each task's wall time, from kfp.local's own start/finish log lines."""
    started: dict[str, float] = {}
    walls: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _TASK_LINE.match(re.sub(r"\x1b\[[0-9;]*m", "", line))
        if not m:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
        if m[4]:
            started[m[4]] = t
        elif m[5] in started:
            walls[m[5]] = (t - started[m[5]]) % 86400
    return walls


def run_once(rows: int, work: Path, fork_server: bool, mode: str) -> dict[str, float]:
    timings = work / f"timings-{rows}-{mode}.jsonl"
    os.environ[ENV_VAR] = str(timings)
    try:
        result = run_training_locally(
            TrainingParams(rows=rows),
            registry_uri=str(work / f"registry-{rows}-{mode}"),
            model_name="churn",
            work_dir=work,
            fork_server=fork_server,
        )
    finally:
        del os.environ[ENV_VAR]
    per_step: dict[str, float] = defaultdict(float)
    for t in read_timings(str(timings)):
        per_step[str(t["step"])] += float(t["seconds"])
    compute = sum(per_step.values())
    walls = task_walls(Path(result["log"]))
    return {
        "rows": rows,
        "mode": mode,
        "wall": result["seconds"],
        "compute": compute,
        **per_step,
        **{f"wall:{k}": v for k, v in walls.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["fresh", "fork", "fork"],
        choices=["fresh", "fork"],
        help="fresh: a new interpreter per task (before); fork: tasks forked from a pre-warmed "
        "server (pipelines.task_forkserver, after); the first fork run starts the server (cold), "
        "later ones reuse it (warm), as a second run in the same process does",
    )
    parser.add_argument(
        "--no-start-costs", action="store_true", help="skip timing interpreter starts per step"
    )
    args = parser.parse_args()
    console = Console(width=160)

    if not args.no_start_costs:
        bare = interpreter_start("pass")
        executor = interpreter_start("import kfp.dsl.executor_main")
        step_imports = {
            s: interpreter_start(f"import kfp.dsl.executor_main, {m}")
            for s, m in STEP_MODULES.items()
        }
        console.print(
            f"per-task fixed cost: python {bare:.2f}s, + KFP executor {executor:.2f}s, "
            + ", ".join(f"{s} {v:.2f}s" for s, v in step_imports.items())
            + f"; all six tasks ~{sum(step_imports.values()):.1f}s of startup per run"
        )

    results = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        forks = 0
        for rows in args.rows:
            for mode in args.modes:  # before and after, back to back at each size
                if mode == "fork":
                    mode = "fork, cold" if forks == 0 else "fork, warm"
                    forks += 1
                with console.status(f"pipeline at {rows:,} rows ({mode} task processes)..."):
                    results.append(
                        run_once(rows, Path(tmp), fork_server=mode != "fresh", mode=mode)
                    )
                r = results[-1]
                console.print(
                    f"{rows:,} rows, {mode}: wall {r['wall']:.1f}s, compute {r['compute']:.1f}s"
                )

    table = Table(title="local training pipeline (kfp.local SubprocessRunner)")
    for col in ("rows", "tasks", "wall s", "compute s", "overhead s", "overhead/compute", *STEPS):
        table.add_column(col, justify="right")
    for r in results:
        overhead = r["wall"] - r["compute"]
        table.add_row(
            f"{r['rows']:,}",
            str(r["mode"]),
            f"{r['wall']:.1f}",
            f"{r['compute']:.1f}",
            f"{overhead:.1f}",
            f"{overhead / r['compute']:.0%}",
            *(f"{r.get(s, 0.0):.1f}" for s in STEPS),
        )
    console.print(table)

    # Where the overhead goes: each task's wall time (kfp.local's log) minus its compute.
    tasks = sorted({k.removeprefix("wall:") for r in results for k in r if k.startswith("wall:")})
    per_task = Table(title="per task: wall s (of which outside the step function)")
    per_task.add_column("rows", justify="right")
    per_task.add_column("tasks", justify="right")
    for t in tasks:
        per_task.add_column(t, justify="right")
    per_task.add_column("between tasks", justify="right")
    for r in results:
        walls = [r.get(f"wall:{t}", 0.0) for t in tasks]
        cells = [f"{w:.1f} ({w - r.get(t, 0.0):.1f})" for t, w in zip(tasks, walls, strict=True)]
        per_task.add_row(f"{r['rows']:,}", str(r["mode"]), *cells, f"{r['wall'] - sum(walls):.1f}")
    console.print(per_task)
    for r in results:
        if r["rows"] == 100_000:
            ratio = (r["wall"] - r["compute"]) / r["compute"]
            verdict = "meets" if ratio <= TARGET_RATIO else "misses"
            console.print(
                f"at 100,000 rows ({r['mode']} task processes) the overhead is {ratio:.0%} of compute: "
                f"{verdict} the {TARGET_RATIO:.0%} target"
            )


if __name__ == "__main__":
    main()
