"""`mlops demo`: every stage runs through the real local pipeline on a fresh registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from mlops_core.settings import Settings
from mlops_demo.stages import (
    STAGES,
    reject_broken_data,
    retrain_on_drifted_data,
    run_demo,
    train_v1_on_clean_data,
)

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing


def test_demo_trains_gates_and_rejects_and_can_be_rerun(tmp_path: Path) -> None:
    console = Console(record=True, width=160)
    settings = Settings(work_dir=str(tmp_path), registry_uri=str(tmp_path / "elsewhere"))
    training_stages = [train_v1_on_clean_data, retrain_on_drifted_data, reject_broken_data]
    assert STAGES[:3] == training_stages  # later stages (canary, drift loop) test themselves
    ctx = run_demo(settings, rows=1500, console=console, stages=training_stages)
    assert list(ctx.results) == ["v1_clean", "covariate_shift", "broken"]
    assert ctx.results["v1_clean"]["outcome"] == "promoted"
    assert ctx.results["covariate_shift"]["outcome"] in {"promoted", "not promoted"}
    assert "monthly_charges" in ctx.results["covariate_shift"]["drift"]
    assert ctx.results["broken"]["outcome"] == "rejected by validation"
    assert ctx.results["broken"]["version"] == "none"
    # its own registry under the work dir, never the user's
    assert Path(ctx.settings.registry_uri) == tmp_path / "demo" / "registry"
    assert not (tmp_path / "elsewhere").exists()
    assert len(ctx.registry.versions("churn")) == 2
    text = console.export_text()
    assert "make demo: what happened" in text and "failing columns: tenure_months" in text
    # a re-run starts from an empty registry again
    again = run_demo(settings, rows=1500, console=Console(record=True), stages=training_stages[:1])
    assert [v.version for v in again.registry.versions("churn")] == [1]
