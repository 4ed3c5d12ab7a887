"""The retraining trigger's debounce, cool-down and decision log."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlops_control.retraining.trigger import (
    KfpRunLauncher,
    RetrainingTrigger,
    ScheduleError,
    TriggerPolicy,
    TriggerPolicyError,
    schedule_recurring_training,
)
from mlops_core.jsonl_log import DecisionLog
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality

FEATURES = ("monthly_charges", "contract", "region", "age", "prediction")


def snapshot(at: float, *drifted: str, version: str = "1") -> DriftSnapshot:
    flags = {f: f in drifted for f in FEATURES}
    return DriftSnapshot(
        at=at,
        model="churn",
        version=version,
        rows=2000,
        share_drifted=sum(flags.values()) / len(flags),
        psi={f: 0.5 if flags[f] else 0.01 for f in FEATURES},
        effect={f: 0.3 if flags[f] else 0.01 for f in FEATURES},
        drifted=flags,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_kfp(tmp_path: Path) -> KfpRunLauncher:
    """A real kfp.Client pointed at a port nothing listens on: every launch is refused."""
    package = tmp_path / "training.yaml"
    package.write_text("{}")
    return KfpRunLauncher(
        host=f"http://127.0.0.1:{closed_port()}", package_path=package, arguments={}
    )


def trigger(tmp_path: Path, **policy: float) -> RetrainingTrigger:
    defaults = {"share_drifted": 0.2, "sustain_s": 60, "min_evaluations": 3, "cooldown_s": 600}
    return RetrainingTrigger(
        TriggerPolicy(**(defaults | policy)),
        unreachable_kfp(tmp_path),
        model="churn",
        decisions=DecisionLog(tmp_path / "decisions.jsonl"),
    )


def test_drift_must_be_sustained_before_firing(tmp_path: Path) -> None:
    t = trigger(tmp_path)
    actions = [t.decide(snapshot(at, "monthly_charges")).action for at in (0, 30, 60, 90)]
    # 3 evaluations reached at t=60 and 60 s held at t=60: fires then, cool-down after.
    assert actions == ["pending", "pending", "fire", "cooldown"]


def test_one_clean_window_breaks_the_streak(tmp_path: Path) -> None:
    t = trigger(tmp_path)
    seq = [
        snapshot(0, "monthly_charges"),
        snapshot(30, "monthly_charges"),
        snapshot(50),  # a clean window: debounce starts over
        snapshot(60, "monthly_charges"),
        snapshot(90, "monthly_charges"),
        snapshot(120, "monthly_charges"),
    ]
    actions = [t.decide(s).action for s in seq]
    assert actions == ["pending", "pending", "idle", "pending", "pending", "fire"]
    events = [e["event"] for e in t.decisions.read()]
    assert events == ["drift_sustaining", "drift_cleared", "drift_sustaining"]


def test_both_duration_and_count_are_needed(tmp_path: Path) -> None:
    t = trigger(tmp_path)
    quick = [t.decide(snapshot(at, "monthly_charges")).action for at in (0, 1, 2, 3, 4)]
    assert "fire" not in quick  # 5 evaluations, but only 4 s of drift
    assert t.decide(snapshot(61, "monthly_charges")).action == "fire"


def test_cool_down_then_a_new_streak_fires_again(tmp_path: Path) -> None:
    t = trigger(tmp_path, cooldown_s=600)
    fired = [
        at
        for at in range(0, 1500, 30)
        if t.decide(snapshot(at, "monthly_charges")).action == "fire"
    ]
    # first at 60; the cool-down ends at 660, a new streak starts there and fires 60 s later.
    assert fired == [60, 720, 1380]


def test_a_small_share_of_drifted_features_does_not_count(tmp_path: Path) -> None:
    t = trigger(tmp_path, share_drifted=0.4)
    assert {t.decide(snapshot(at, "region")).action for at in range(0, 300, 30)} == {"idle"}
    watched = trigger(tmp_path, share_drifted=0.4)
    watched.policy = TriggerPolicy(
        share_drifted=0.4, features=("region",), sustain_s=60, min_evaluations=3
    )
    assert "fire" in {watched.decide(snapshot(at, "region")).action for at in range(0, 300, 30)}


def test_low_live_accuracy_alone_can_trigger(tmp_path: Path) -> None:
    t = trigger(tmp_path, min_accuracy=0.7)
    low = LiveQuality("churn", "1", 800, 0.61, 0.7, 0.25, 0.2, 0.4, 0.3)
    decisions = [t.decide(snapshot(at), quality=low) for at in (0, 30, 60)]
    assert decisions[-1].action == "fire"
    assert "live accuracy 0.610 < 0.7" in decisions[-1].reason


def test_a_refused_launch_is_logged_and_still_cools_down(tmp_path: Path) -> None:
    t = trigger(tmp_path)
    results = [t.evaluate(snapshot(at, "monthly_charges", "contract")) for at in (0, 30, 60, 90)]
    assert [r.action for r in results] == ["pending", "pending", "launch_failed", "cooldown"]
    assert "refused the retraining run" in results[2].reason
    failed = [e for e in t.decisions.read() if e["event"] == "retraining_launch_failed"]
    assert len(failed) == 1
    assert failed[0]["trigger_id"] == results[2].trigger_id
    assert failed[0]["drifted_features"] == ["monthly_charges", "contract"]
    assert failed[0]["event_id"].startswith("evt-")


def test_recurring_schedule_needs_kfp_cron_syntax(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="6 fields"):
        schedule_recurring_training(
            None, package_path=tmp_path / "p.yaml", arguments={}, cron="0 3 * * *"
        )


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(TriggerPolicyError, match="share_drifted"):
        TriggerPolicy(share_drifted=0)
    with pytest.raises(TriggerPolicyError, match="min_evaluations"):
        TriggerPolicy(min_evaluations=0)
