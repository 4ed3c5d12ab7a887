"""Gate: decide whether the candidate replaces the champion, and say why.

The candidate is promoted only when every ML test passed and it beats the champion on the primary
metric by at least `margin` on the same holdout. With no champion yet, passing the tests is enough.
The decision is data (an output of the run), not a log line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from components.evaluate import HIGHER_IS_BETTER, Evaluation, resolve_primary_metric
from mlops_core.step_timing import timed_step


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]
    primary_metric: str
    margin: float
    candidate: float
    champion: float | None
    champion_version: int | None
    improvement: float | None  # positive = candidate better, whatever the metric's direction
    metric_deltas: dict[str, float]  # candidate - champion for every shared metric

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GateDecision:
        return cls(**{**doc, "reasons": tuple(doc["reasons"])})


def decide(evaluation: Evaluation, *, primary_metric: str, margin: float) -> GateDecision:
    if primary_metric and primary_metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"unknown primary metric {primary_metric!r}; choose one of {list(HIGHER_IS_BETTER)}"
        )
    # Empty: the task's default; a metric of another task is refused with the task's choices.
    primary_metric = resolve_primary_metric(primary_metric, evaluation.task)
    reasons: list[str] = []
    failed = [t for t in evaluation.tests if t.failed]
    reasons += [f"test {t.name} failed: {t.detail}" for t in failed]
    reasons += [f"test {t.name} passed" for t in evaluation.tests if t.passed]
    reasons += [f"test {t.name} {t.detail}" for t in evaluation.tests if t.skipped]
    candidate = evaluation.metrics[primary_metric]
    champ_metrics = evaluation.champion_metrics
    improvement = champion = None
    deltas: dict[str, float] = {}
    beats = True
    if champ_metrics is None:
        reasons.append(
            "no champion yet: the candidate becomes the first champion if its tests pass"
        )
    else:
        champion = champ_metrics[primary_metric]
        # Lower is better for losses and errors (log_loss, brier, rmse, mae).
        sign = 1.0 if HIGHER_IS_BETTER[primary_metric] else -1.0
        improvement = sign * (candidate - champion)
        deltas = {
            k: evaluation.metrics[k] - champ_metrics[k]
            for k in HIGHER_IS_BETTER
            if k in evaluation.metrics and k in champ_metrics
        }
        beats = improvement >= margin
        verdict = "beats" if beats else "does not beat"
        reasons.append(
            f"{primary_metric}: candidate {candidate:.4f} vs champion "
            f"v{evaluation.champion_version} {champion:.4f} (improvement {improvement:+.4f}) "
            f"{verdict} the required margin {margin}"
        )
    return GateDecision(
        promote=not failed and beats,
        reasons=tuple(reasons),
        primary_metric=primary_metric,
        margin=margin,
        candidate=candidate,
        champion=champion,
        champion_version=evaluation.champion_version,
        improvement=improvement,
        metric_deltas=deltas,
    )


@timed_step("gate")
def gate_step(
    *, evaluation_path: str, decision_path: str, primary_metric: str, margin: float
) -> GateDecision:
    with open(evaluation_path) as fh:
        evaluation = Evaluation.from_dict(json.load(fh))
    decision = decide(evaluation, primary_metric=primary_metric, margin=margin)
    with open(decision_path, "w") as fh:
        json.dump(decision.to_dict(), fh, indent=2)
    return decision
