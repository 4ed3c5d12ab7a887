"""Run the training pipeline on this machine with `kfp.local`, no cluster.

`run_training_locally(TrainingParams(...), ...)` is the one entry point: the CLI (`mlops pipeline
run --local`), the demo and the drift-triggered retraining loop all call it. Each run gets its own
pipeline root under the work dir; the KFP task logs go to a file there instead of the terminal.
`TrainingParams` is declared in pipelines/params.py and importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_core.errors import MlopsError
from pipelines.params import TrainingParams

# The task's last exception line; kfp.local indents the task's output in the log.
_ERROR_LINE = re.compile(r"^[ \t]*(\w+(?:\.\w+)*(?:Error|Exception)): (.*)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The tasks that fail on rejected data: validate only if it crashed; require-valid-data on its verdict.
VALIDATION_STEPS = ("validate", "require-valid-data")


class PipelineRunError(MlopsError):
    """A local pipeline run failed; `run_dir` holds its task logs and artifacts."""

    def __init__(self, message: str, *, run_dir: Path, step: str = "") -> None:
        super().__init__(message)
        self.run_dir = run_dir
        self.step = step


class ValidationFailed(PipelineRunError):
    """The validate step rejected the data (its verdict failed the require-valid-data step);
    nothing was trained or registered."""

    def __init__(
        self,
        message: str,
        *,
        run_dir: Path,
        report_path: Path | None,
        failing_columns: list[str],
    ) -> None:
        super().__init__(message, run_dir=run_dir, step="validate")
        self.report_path = report_path
        self.failing_columns = failing_columns


def run_training_locally(
    params: TrainingParams,
    *,
    registry_uri: str,
    model_name: str,
    work_dir: str | Path,
    image: str | None = None,
    fork_server: bool | None = None,
) -> dict[str, Any]:
    """Run ingest -> validate -> train -> evaluate -> gate -> register (deploy off) with kfp.local.

    `fork_server` (default: the `task_fork_server` setting) forks each task's process from one
    pre-warmed server instead of a fresh interpreter (`pipelines.task_forkserver`).

    Returns the register step's decision (promoted, version, reasons, metric deltas) plus `run_dir`,
    `log` and `seconds`. Raises `ValidationFailed` (naming the failing columns and the report) when
    the data is rejected, `PipelineRunError` for any other failed step.
    """
    from mlops_core.settings import load_settings
    from pipelines.training import build_training_pipeline

    if fork_server is None:
        fork_server = load_settings().task_fork_server

    registry_uri = _absolute(registry_uri)
    params = _absolute_source(params)
    # Runs are named after the model they train: `iris-training-<time>`, not always churn's.
    pipeline = build_training_pipeline(image, name=f"{model_name}-training")
    start = time.perf_counter()
    with local_kfp_run(work_dir, "runs", fork_server=fork_server) as (run_root, log_path):
        try:
            task = pipeline(registry_uri=registry_uri, model_name=model_name, **params.arguments())
        except RuntimeError as e:
            failure: RuntimeError | None = e
        except KeyboardInterrupt:
            stop_task_processes()  # Ctrl-C: no step keeps running orphaned
            raise
        else:
            failure = None
    seconds = time.perf_counter() - start
    if failure is not None:
        raise _explain_failure(failure, run_root, log_path) from failure
    result = json.loads(task.output)
    validation = _validation_outputs(run_root)
    return result | {
        "validation": validation,
        "run_dir": str(run_root),
        "log": str(log_path),
        "seconds": seconds,
    }


def stop_task_processes() -> None:
    """Kill the steps of an interrupted run: the fork server's tasks (its process group), and any
    step kfp.local started as a plain interpreter (a child of this process running KFP's
    executor). A terminal's Ctrl-C reaches only this process's group; a `kill -INT` only this
    process: either way the step would otherwise keep running, and holding its memory."""
    from pipelines.task_forkserver import EXECUTOR_MODULE, kill_running_tasks

    kill_running_tasks()
    for pid in _descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if EXECUTOR_MODULE.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Every live descendant of `root` (Linux /proc; none elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    for pid in entries:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        kids = children.get(frontier.pop(), [])
        found += kids
        frontier += kids
    return found


@contextlib.contextmanager
def local_kfp_run(
    work_dir: str | Path, kind: str, *, fork_server: bool
) -> Iterator[tuple[Path, Path]]:
    """kfp.local set up for one pipeline run (training or batch scoring): a fresh run folder
    `<work_dir>/<kind>/<timestamp>` as the pipeline root, the SubprocessRunner in this
    interpreter, the tasks' output in the folder's `tasks.log`, and each task's process forked
    from one pre-warmed server where `fork_server` (pipelines.task_forkserver). Yields the run
    folder and the log's path."""
    import kfp.local

    from pipelines.task_forkserver import task_fork_server

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    run_root = Path(work_dir).resolve() / kind / stamp
    run_root.mkdir(parents=True, exist_ok=True)
    log_path = run_root / "tasks.log"
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_root),
        raise_on_error=True,
    )
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(log),
        warnings.catch_warnings(),
        task_fork_server(fork_server),
    ):
        # The SubprocessRunner warns that an image without "python" in its name may not be
        # Python; ours is, and locally the current interpreter runs the body anyway.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        yield run_root, log_path


def _validation_outputs(run_root: Path) -> dict[str, Any]:
    """The validate step's summary (drifted/failing columns) and the path of its report."""
    summaries = sorted(run_root.glob("*/validate/summary"))
    reports = sorted(run_root.glob("*/validate/report"))
    doc = json.loads(summaries[-1].read_text()) if summaries else {}
    drift = doc.get("drift") or {"features": []}
    drifted = [f["feature"] for f in drift["features"] if f["drifted"]]
    if (doc.get("label_shift") or {}).get("drifted"):
        drifted.append(doc["label_shift"]["feature"])
    return {
        "passed": doc.get("passed"),
        "summary": doc.get("summary", ""),
        "failing_columns": doc.get("failing_columns", []),
        "drifted_columns": drifted,
        "leakage_warning": doc.get("leakage_warning", ""),
        "report": str(reports[-1]) if reports else "",
    }


def _absolute(uri: str) -> str:
    """Task subprocesses may run elsewhere: make local paths absolute, leave URLs alone."""
    return uri if "://" in uri else str(Path(uri).resolve())


def _absolute_source(params: TrainingParams) -> TrainingParams:
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if params.data_source and params.data_source != "synthetic":
        changes["data_source"] = _absolute(params.data_source)
    if params.schema_uri:
        changes["schema_uri"] = _absolute(params.schema_uri)
    return replace(params, **changes) if changes else params


def _explain_failure(error: RuntimeError, run_root: Path, log_path: Path) -> PipelineRunError:
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    failed_step = _failed_step(str(error))
    validation = _validation_outputs(run_root)
    if failed_step in VALIDATION_STEPS and validation["summary"]:
        report = Path(validation["report"]) if validation["report"] else None
        return ValidationFailed(
            f"{validation['summary']}; report: {report}",
            run_dir=run_root,
            report_path=report,
            failing_columns=validation["failing_columns"],
        )
    errors = _ERROR_LINE.findall(log)
    cause = (
        f"{errors[-1][0].rsplit('.', 1)[-1]}: {errors[-1][1].strip()}"
        if errors
        else _ANSI.sub("", str(error))
    )
    return PipelineRunError(
        f"step {failed_step or '?'} failed: {cause} (task logs: {log_path})",
        run_dir=run_root,
        step=failed_step,
    )


def _failed_step(message: str) -> str:
    # kfp.local: "... Inner task failed: <colour codes>validate<colour codes>."
    plain = _ANSI.sub("", message)
    m = re.search(r"Inner task failed: '?([\w-]+)", plain)
    return m.group(1) if m else ""
