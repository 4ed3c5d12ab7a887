"""Ctrl-C on a local run leaves no step running (issue 25: after Ctrl-C on a 10,000-class run
the train task kept running orphaned, at 91% CPU and 5.5 GB). A real `run_training_locally` in a
subprocess, interrupted with SIGINT while its train step runs; then every process it had started
must be gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RUN = textwrap.dedent(
    """
    import sys
    from pipelines.local_run import run_training_locally
    from pipelines.params import TrainingParams

    run_training_locally(
        TrainingParams(rows=120_000, estimator="xgboost"),
        registry_uri=sys.argv[1] + "/registry",
        model_name="churn",
        work_dir=sys.argv[1],
    )
    """
)


def _descendants(root: int) -> list[int]:
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, frontier = [], [root]
    while frontier:
        kids = [pid for pid, ppid in parent.items() if ppid == frontier[-1]]
        frontier.pop()
        found += kids
        frontier += kids
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has stopped running


def _train_started(work: Path) -> bool:
    return any(p.name == "train" for p in work.glob("runs/*/*/*"))


@pytest.mark.parametrize("fork_server", ["true", "false"])
def test_sigint_during_training_leaves_no_task_running(tmp_path: Path, fork_server: str) -> None:
    env = {**os.environ, "MLOPS_TASK_FORK_SERVER": fork_server}
    # SIGINT's default disposition, as in a terminal: a job started in the background by a
    # non-interactive shell (a CI runner's `cmd &`) inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler, so the run would ignore the Ctrl-C under test.
    run = subprocess.Popen(
        [sys.executable, "-c", RUN, str(tmp_path)],
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 400
    while not _train_started(tmp_path):
        assert run.poll() is None, "the run ended before its train step started"
        assert time.monotonic() < deadline, "the train step never started"
        time.sleep(0.05)
    time.sleep(1.0)  # the step's process is up and training
    started = _descendants(run.pid)
    assert started, "no task process found"
    os.kill(run.pid, signal.SIGINT)  # what Ctrl-C sends (to this process alone here)
    assert run.wait(timeout=120) != 0
    deadline = time.monotonic() + 15
    while (left := [pid for pid in started if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    survivors = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()[:120] for pid in left}
    for pid in left:  # do not leave them running after the test either
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"still running after the interrupt: {survivors}"
