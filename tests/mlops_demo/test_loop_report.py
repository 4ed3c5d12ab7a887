"""The loop's HTML report tells the truth: the threshold drawn is the one used, bars start at zero,
higher- and lower-is-better metrics are apart, and the retraining time is the audit trail's."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from rich.console import Console

from mlops_control.retraining.trigger import TriggerDecision
from mlops_core.settings import Settings
from mlops_demo.context import DemoContext
from mlops_demo.drift_loop import loop_model_name
from mlops_demo.loop_report import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    drift_figure,
    retraining_seconds,
    timings_line,
    versions_figure,
    write_report,
)
from mlops_demo.loop_result import LoopResult, TimelinePoint
from mlops_demo.loop_traffic import Phase
from mlops_demo.stages import next_steps, summary_table
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality

THRESHOLD = 0.15


def _snapshot(psi: float, drifted: bool) -> DriftSnapshot:
    return DriftSnapshot(
        at=0.0,
        model="churn-loop",
        version="1",
        rows=600,
        share_drifted=0.1 if drifted else 0.0,
        psi={"monthly_charges": psi, "age": 0.01},
        effect={"monthly_charges": 0.2, "age": 0.01},
        drifted={"monthly_charges": drifted, "age": False},
    )


def _quality(version: str, accuracy: float) -> LiveQuality:
    return LiveQuality(
        model="churn-loop",
        version=version,
        labelled=500,
        accuracy=accuracy,
        log_loss=0.45,
        brier_score=0.15,
        calibration_error=0.05,
        positive_rate=0.3,
        mean_probability=0.3,
    )


def _result(tmp_path: Path) -> LoopResult:
    audit = tmp_path / "audit"
    audit.mkdir()
    events = [
        {"event": "retraining_triggered", "event_id": "e1", "at": "2026-12-06T07:00:00+00:00"},
        {"event": "retraining_completed", "event_id": "e2", "at": "2026-12-06T07:00:12.700+00:00"},
    ]
    (audit / "decisions.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    # Drift judged by the test (a material effect) at PSI 0.105 and 0.14, below the PSI threshold.
    timeline = [
        TimelinePoint(25 * i, 100 * i, "steady", _snapshot(0.035 * i, i >= 3), "idle")
        for i in range(1, 5)
    ]
    return LoopResult(
        model="churn-loop",
        registry_uri=str(tmp_path / "registry"),
        audit_dir=str(audit),
        v1=1,
        v2=2,
        phases=(Phase("steady", 1.0, 0.0, 100),),
        timeline=timeline,
        phase_starts=[(0, "steady")],
        trigger=TriggerDecision(
            action="fired", at=0.0, version="1", reason="drift", trigger_id="t1"
        ),
        trigger_request=75,
        retrain={"candidate": 0.793, "champion_metric": 0.785, "promoted": True, "run_id": "r"},
        quality={"1": _quality("1", 0.70), "2": _quality("2", 0.74)},
        seconds={"train_v1": 9.0, "retrain": 12.7},
        psi_threshold=THRESHOLD,
        trigger_share_drifted=0.08,
    )


def test_drift_plot_draws_the_monitors_threshold_and_marks_drifted_points(tmp_path: Path) -> None:
    fig = drift_figure(_result(tmp_path))
    ax = fig.axes[0]
    horizontal = [ln.get_ydata() for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1]
    assert [THRESHOLD, THRESHOLD] in [list(y) for y in horizontal]
    assert [0.2, 0.2] not in [list(y) for y in horizontal]
    marked = [c for c in ax.collections if c.get_label().startswith("judged drifted")]
    assert marked and len(marked[0].get_offsets()) == 2  # two points, both below the PSI line
    assert all(y < THRESHOLD for _, y in marked[0].get_offsets())
    plt.close(fig)


def test_version_bars_start_at_zero_and_directions_are_apart(tmp_path: Path) -> None:
    fig = versions_figure(_result(tmp_path))
    auc, higher, lower = fig.axes[:3]
    assert auc.get_ylim()[0] == 0 and auc.get_ylim()[1] >= 1.0
    for ax in (higher, lower):
        assert ax.get_ylim()[0] == 0
    assert "higher is better" in higher.get_title() and "lower is better" in lower.get_title()
    ticks = [t.get_text() for t in higher.get_xticklabels()]
    assert ticks == [m.replace("_", " ") for m in HIGHER_IS_BETTER]
    ticks = [t.get_text() for t in lower.get_xticklabels()]
    assert ticks == [m.replace("_", " ") for m in LOWER_IS_BETTER]
    plt.close(fig)


def test_retraining_time_is_the_audit_trails(tmp_path: Path) -> None:
    r = _result(tmp_path)
    assert retraining_seconds(r.audit_dir) == pytest.approx(12.7)
    assert "retraining run (triggered -> v2 registered, as in the audit trail) 12.7 s" in (
        timings_line(r)
    )
    html = write_report(r, tmp_path / "report.html").read_text()
    assert "12.7 s" in html


def test_demo_summary_names_each_version_with_its_model(tmp_path: Path) -> None:
    """The first stages' v2 and the loop's v2 are different models: the summary says which."""
    assert loop_model_name("churn") != "churn"
    ctx = DemoContext(
        settings=Settings(registry_uri=str(tmp_path / "demo" / "registry")),
        registry=None,  # type: ignore[arg-type]
        console=Console(),
        work_dir=tmp_path,
        rows=100,
        results={
            "covariate_shift": {"stage": "retrain", "version": "churn v2", "seconds": 1.0},
            "drift_loop": {
                "stage": "loop",
                "version": "churn-loop v2",
                "model": "churn-loop",
                "registry": str(tmp_path / "demo" / "loop" / "registry"),
                "seconds": 1.0,
            },
        },
    )
    out = Console(record=True, width=200)
    out.print(summary_table(ctx))
    text = out.export_text()
    assert "churn v2" in text and "churn-loop v2" in text
    lines = next_steps(ctx)
    assert any("(model churn-loop)" in line for line in lines)
