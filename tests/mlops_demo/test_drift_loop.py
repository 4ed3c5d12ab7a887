"""The whole loop on small data: drift in served traffic -> trigger -> retrain -> canary -> promote,
then the report and the audit trail of one prediction."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from mlops_core.jsonl_log import read_json_lines
from mlops_core.registry import ModelRegistry
from mlops_demo.drift_loop import run_loop
from mlops_demo.loop_report import write_report

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing


@pytest.mark.slow
def test_the_loop_end_to_end(tmp_path: Path) -> None:
    console = Console(file=(tmp_path / "console.txt").open("w"), width=160)
    result = run_loop(model="churn", work_dir=tmp_path / "loop", rows=8000, console=console)

    # the monitor saw the drift and the trigger fired on it, with a reason naming the feature
    assert result.trigger is not None and result.trigger.action == "fired"
    assert "monthly_charges" in result.trigger.reason
    first_fired = next(p for p in result.timeline if p.action == "fired")
    assert first_fired.snapshot.drifted["monthly_charges"]
    assert not any(p.snapshot.drifted["monthly_charges"] for p in result.timeline[:2])

    # the retraining run made v2, which beat v1 on recent data and was promoted by the canary
    registry = ModelRegistry(result.registry_uri)
    assert (result.v1, result.v2) == (1, 2)
    assert (
        result.retrain["promoted"]
        and result.retrain["candidate"] > result.retrain["champion_metric"]
    )
    assert result.rollout_action == "promote"
    assert registry.champion("churn") == 2
    assert result.failures == 0 and result.labels > 1000

    # every decision is in the log with ids that link trigger, run and version
    events = list(read_json_lines(Path(result.audit_dir) / "decisions.jsonl"))
    kinds = [e["event"] for e in events]
    assert kinds.index("drift_sustaining") < kinds.index("retraining_triggered")
    assert kinds.index("retraining_triggered") < kinds.index("retraining_completed")
    triggered = next(e for e in events if e["event"] == "retraining_triggered")
    completed = next(e for e in events if e["event"] == "retraining_completed")
    assert completed["trigger_id"] == triggered["trigger_id"] and completed["version"] == 2
    assert registry.get("churn", 2).run_id == completed["run_id"]

    # one query traces a v1 prediction: version, revision, run, data, and the run it led to
    audit = result.audit_example
    assert audit["served"]["version"] == 1 and audit["served"]["revision"].startswith("local")
    assert audit["version"]["run_id"] == registry.get("churn", 1).run_id
    assert audit["version"]["data_fingerprint"] == registry.get("churn", 1).data_fingerprint
    assert audit["next_run"]["trigger"]["trigger_id"] == triggered["trigger_id"]
    assert audit["next_run"]["produced_version"] == 2
    assert any(r["action"] == "promote" for r in audit["rollout"])

    # the same answer from the command line
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("mlops")),
            "audit",
            audit["request_id"],
            "--json",
            "--audit-dir",
            result.audit_dir,
            "--registry",
            result.registry_uri,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["next_run"]["produced_version"] == 2

    # the report: one self-contained file with its plots inline
    report = write_report(result, tmp_path / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', report)) == 3
    assert "retraining_triggered" in report and "http://" not in report.split("<body>")[1][:200]
