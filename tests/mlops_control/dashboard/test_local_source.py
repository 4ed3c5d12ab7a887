"""The local backend's reading of the logs: incremental, rotation-safe, and what it derives."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mlops_control.dashboard.local_source import LocalSource
from mlops_control.dashboard.tailed_logs import TailedLogs
from mlops_control.rollout.analysis import CanaryDecision, CheckResult
from mlops_core.jsonl_log import DecisionLog, JsonLinesWriter
from tests.mlops_control.dashboard.harness import (
    register_models,
    start_dashboard,
    write_monitoring,
)


def test_tailed_logs_read_each_line_once_across_rotation_and_torn_lines(tmp_path: Path) -> None:
    writer = JsonLinesWriter(tmp_path / "decisions.jsonl", max_bytes=200, backups=3)
    logs = TailedLogs([tmp_path], ["*.jsonl"])
    seen: list[int] = []
    for n in range(30):
        writer.write({"n": n, "pad": "x" * 40})  # rotates every few lines
        if n % 7 == 0:
            seen += [d["n"] for d in logs.new_lines()]
    seen += [d["n"] for d in logs.new_lines()]
    assert sorted(seen) == list(range(30)) and len(seen) == len(set(seen))
    with open(tmp_path / "decisions.jsonl", "ab") as fh:  # a writer mid-line
        fh.write(b'{"n": 30, "pa')
    assert list(logs.new_lines()) == []
    with open(tmp_path / "decisions.jsonl", "ab") as fh:
        fh.write(b'd": ""}\n')
    assert [d["n"] for d in logs.new_lines()] == [30]


def test_monitoring_log_gives_drift_and_quality_over_time(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry")
    register_models(registry, ["churn"])
    write_monitoring(tmp_path / "audit", registry, "churn", scenario="covariate_shift")
    source = LocalSource([tmp_path / "audit"])
    live = source.live()["churn"]
    assert live["drift"]["version"] == "1" and "monthly_charges" in live["drift"]["drifted"]
    assert 0.5 < live["quality"]["accuracy"] <= 1.0 and live["quality"]["labelled"] > 0
    history = source.history("churn")
    assert len(history["drift"]["series"]["monthly_charges"]) == 3  # one point per evaluation
    assert history["drift"]["thresholds"]["psi"] == 0.2
    assert len(history["quality"]["1"]) == 3 and history["rollout"] is None
    feature = source.feature("churn", "contract")
    assert sum(feature["counts"]) == feature["rows"] > 0
    write_monitoring(tmp_path / "audit", registry, "churn", evaluations=1, seed=40)
    assert len(source.history("churn")["drift"]["series"]["age"]) == 4  # only the new line read


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("dashboard-api")
    register_models(str(root / "registry"), ["churn"])
    running = start_dashboard(["--registry", str(root / "registry"), "--audit-dir", str(root)],
                              root / "dashboard.log")  # fmt: skip
    yield running.url
    running.stop()


def test_unknown_names_answer_404_and_writes_405(dashboard: str) -> None:
    missing = httpx.get(f"{dashboard}/api/models/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    feature = httpx.get(f"{dashboard}/api/models/churn/features/nope")
    assert feature.status_code == 404 and "nope" in feature.json()["error"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert httpx.request(method, f"{dashboard}/api/portfolio").status_code == 405
    page = httpx.get(f"{dashboard}/models/churn/features/contract")
    assert page.status_code == 200 and "/static/dashboard.js" in page.text


def test_a_bad_source_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    import subprocess
    import sys

    mlops = str(Path(sys.executable).with_name("mlops"))
    done = subprocess.run([mlops, "dashboard", "--source", "s3"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --source must be one of local, cluster, got 's3'"
    ]


def _decide(log: DecisionLog, stable: str, canary: str, action: str, to: int, frm: int) -> None:
    """One decision line as the rollout loop writes it (mlops_control/rollout/loop.py)."""
    check = CheckResult("errors", "pass", "ok", {"log_evidence": 0.5, "log_threshold": 5.7})
    decision = CanaryDecision(action, f"{action} to {to}%", to, frm, (check,))  # type: ignore[arg-type]
    log.append("canary_decision", model="churn", stable_version=stable, canary_version=canary,
               decision=decision.to_dict(),
               window={"stable": {"requests": 100 - to}, "canary": {"requests": to}})  # fmt: skip


def test_the_current_rollout_is_the_newest_across_logs(tmp_path: Path) -> None:
    first = DecisionLog(tmp_path / "canary" / "churn.jsonl")
    _decide(first, "1", "2", "step_up", 25, 10)
    _decide(first, "1", "2", "promote", 100, 25)
    second = DecisionLog(tmp_path / "audit" / "rollout.jsonl")
    _decide(second, "2", "3", "step_up", 25, 10)
    _decide(second, "2", "3", "hold", 25, 25)
    source = LocalSource([tmp_path / "audit", tmp_path / "canary"])
    live = source.live()["churn"]
    assert live["rollout"] == {"in_progress": True, "stable": "2", "canary": "3",
                               "canary_percent": 25, "outcome": None}  # fmt: skip
    assert live["last_decision"]["action"] == "hold"
    rollout = source.history("churn")["rollout"]
    assert [d["action"] for d in rollout["decisions"]] == ["step_up", "hold"]
    assert [p[1] for p in rollout["share"]["3"]] == [0.25, 0.25]
    assert [p[1:] for p in rollout["checks"]["errors"]] == [[0.5, 5.7, "pass"]] * 2
