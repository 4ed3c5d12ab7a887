"""`mlops experiment` mistakes are one red line, exit 2, caught before anything moves (no router
is running for these: a mistake is found before the router is asked)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # one `mlops` process per command


def mlops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mlops")
    env = {**os.environ, "MLOPS_WORK_DIR": str(tmp_path / "work"),
           "MLOPS_CANARY_ROUTER_URL": "http://127.0.0.1:9"}  # fmt: skip
    return subprocess.run(
        [str(exe), "experiment", *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize(
    ("policy", "strategy", "says"),
    [
        ("strategy: abn\nreward: {task: binary, classes: [0, 1]}\n", "bandit",
         "--strategy bandit but the policy file"),
        ("reward: {task: binary, classes: [0, 1]}\nfloor_percent: 70\n", "bandit",
         "floor_percent must be in [1, 50], got 70"),
        ("task: binary\nmirror_pct: 100\n", "shadow", "unknown shadow policy fields ['mirror_pct']"),
        ("strategy: bandit\nreward: {task: binary, classes: [0, 1]}\n", "bandit",
         "the router at http://127.0.0.1:9 did not answer"),
    ],
)  # fmt: skip
def test_start_mistakes_are_one_line(tmp_path: Path, policy: str, strategy: str, says: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    r = mlops(tmp_path, "start", "--strategy", strategy, "--policy", str(path), "--versions", "1,2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "work" / "experiments").exists()  # nothing was recorded


def test_status_without_an_experiment_says_how_to_start_one(tmp_path: Path) -> None:
    r = mlops(tmp_path, "status", "--model", "churn")
    assert r.returncode == 2 and "mlops experiment start" in r.stderr, r.stderr
