"""What one run of the drift -> retrain loop produced: the loop writes it, the report reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops_control.retraining.trigger import TriggerDecision
from mlops_demo.loop_traffic import Phase
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.monitoring.feedback import LiveQuality


@dataclass
class TimelinePoint:
    request: int  # requests sent so far
    rows: int
    phase: str
    snapshot: DriftSnapshot
    action: str


@dataclass
class LoopResult:
    model: str
    registry_uri: str
    audit_dir: str
    v1: int
    v2: int | None = None
    phases: tuple[Phase, ...] = ()
    timeline: list[TimelinePoint] = field(default_factory=list)
    phase_starts: list[tuple[int, str]] = field(default_factory=list)
    trigger: TriggerDecision | None = None
    trigger_request: int | None = None
    retrain: dict[str, Any] = field(default_factory=dict)
    retrain_done_request: int | None = None
    rollout_decisions: list[dict[str, Any]] = field(default_factory=list)
    rollout_traffic: list[tuple[float, str]] = field(default_factory=list)  # (t, version)
    rollout_action: str = ""
    quality: dict[str, LiveQuality | None] = field(default_factory=dict)
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    labels: int = 0
    failures: int = 0
    audit_example: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    report_path: str = ""
    psi_threshold: float = 0.2  # the monitor's (MLOPS_DRIFT_PSI), drawn on the drift plot
    trigger_share_drifted: float = 0.0  # the trigger policy's share of drifted features
