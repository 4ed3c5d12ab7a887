"""The live monitoring log: each drift evaluation as one JSON line, with the window's bucket counts
and the version's live quality.

On the cluster Prometheus keeps these numbers over time; locally nothing does, so the model server
writes `monitoring.jsonl` next to its prediction log (the audit dir) and `mlops dashboard` draws
drift per feature, the live distributions and quality over time from it. It rotates by size like
the prediction log.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mlops_core.drift import DriftReport
from mlops_core.jsonl_log import JsonLinesWriter
from serving.monitoring.drift_monitor import DriftMonitor
from serving.monitoring.feedback import FeedbackStore

MONITORING_LOG = "monitoring.jsonl"
EVENT = "drift_evaluated"


class MonitoringLog:
    """A drift-monitor subscriber: one line per evaluation of one version."""

    def __init__(
        self,
        path: str | Path,
        *,
        drift: DriftMonitor,
        feedback: FeedbackStore | None,
        max_bytes: int = 0,
        backups: int = 0,
    ) -> None:
        self.drift, self.feedback = drift, feedback
        self.writer = JsonLinesWriter(path, max_bytes=max_bytes, backups=backups)

    def __call__(self, version: str, report: DriftReport, at: float) -> None:
        self.writer.write(evaluation_line(self.drift, self.feedback, version, report, at))


def evaluation_line(
    drift: DriftMonitor,
    feedback: FeedbackStore | None,
    version: str,
    report: DriftReport,
    at: float,
) -> dict[str, Any]:
    quality = feedback.quality(version) if feedback is not None else None
    return {
        "event": EVENT,
        "at": at,
        "model": drift.model,
        "version": str(version),
        "rows": report.rows,
        "share_drifted": report.share_drifted,
        "thresholds": asdict(report.thresholds),
        "features": {
            f.feature: {
                "kind": f.kind,
                "psi": f.psi,
                "test": f.test,
                "effect": f.effect,
                "p_value": f.p_value,
                "drifted": f.drifted,
            }
            for f in report.features
        },
        "counts": {k: [int(x) for x in v] for k, v in drift.window_counts(version).items()},
        "quality": quality.to_dict() if quality is not None else None,
    }
