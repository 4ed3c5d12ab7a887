"""Label feedback as an experiment sees it: rewards per version over matured predictions only.

A prediction has matured when its label window has closed (`label_window_s` after it was made).
Counting only matured predictions, each exactly once (the state keeps the watermark `until`), keeps
an arm that served more recent traffic from looking worse merely because its labels have not come
yet: a matured prediction without a label is left out, never counted as a failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops_control.experiments.reward import RewardSpec
from mlops_control.rollout.window import VersionCounters


@dataclass(frozen=True)
class LabelledPrediction:
    """One prediction joined with its label by request id (label None: none has come)."""

    request_id: str
    version: str  # the version that served it
    predicted_at: float  # seconds since the epoch
    prediction: float  # `mlops_core.target.prediction_score` of the row
    label: float | None = None  # class index or value


@dataclass(frozen=True)
class ArmRewards:
    """Sufficient statistics of one version's rewards (counts may be fractional once discounted)."""

    matured: float = 0.0  # matured predictions, labelled or not
    labelled: float = 0.0
    total: float = 0.0  # sum of rewards
    squares: float = 0.0  # sum of squared rewards

    def __add__(self, other: ArmRewards) -> ArmRewards:
        return ArmRewards(
            self.matured + other.matured,
            self.labelled + other.labelled,
            self.total + other.total,
            self.squares + other.squares,
        )

    def scaled(self, factor: float) -> ArmRewards:
        return ArmRewards(
            self.matured * factor,
            self.labelled * factor,
            self.total * factor,
            self.squares * factor,
        )

    @property
    def mean(self) -> float:
        return self.total / self.labelled if self.labelled else float("nan")

    @property
    def variance(self) -> float:
        if self.labelled < 2:
            return float("nan")
        m = self.mean
        return max(self.squares / self.labelled - m * m, 0.0) * self.labelled / (self.labelled - 1)

    def to_dict(self) -> dict[str, float]:
        return {
            "matured": self.matured,
            "labelled": self.labelled,
            "total": self.total,
            "squares": self.squares,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ArmRewards:
        return cls(
            float(doc["matured"]),
            float(doc["labelled"]),
            float(doc["total"]),
            float(doc["squares"]),
        )

    @classmethod
    def of(cls, rewards: np.ndarray, matured: int) -> ArmRewards:
        r = np.asarray(rewards, dtype=float)
        return cls(float(matured), float(len(r)), float(r.sum()), float((r * r).sum()))


def matured_rewards(
    records: Iterable[LabelledPrediction],
    reward: RewardSpec,
    *,
    since: float,
    until: float,
    versions: Iterable[str],
) -> dict[str, ArmRewards]:
    """Rewards per version of the predictions made in (since, until], where `until` is at most
    now - label_window_s; unlabelled ones count as matured, not as rewards."""
    by_version: dict[str, tuple[list[float], list[float], int]] = {v: ([], [], 0) for v in versions}
    for r in records:
        if not since < r.predicted_at <= until or r.version not in by_version:
            continue
        labels, scores, matured = by_version[r.version]
        if r.label is not None:
            labels.append(r.label)
            scores.append(r.prediction)
        by_version[r.version] = (labels, scores, matured + 1)
    return {
        v: ArmRewards.of(reward.rewards(np.array(y), np.array(s)), n)
        for v, (y, s, n) in by_version.items()
    }


@dataclass(frozen=True)
class IntervalEvidence:
    """What one step of an experiment sees."""

    interval: int  # e.g. floor(now / interval_s): the step's identity, for idempotence
    until: float  # predictions made up to here have matured and are in `rewards`
    rewards: dict[str, ArmRewards]  # the interval's matured predictions, per version
    serving: dict[str, VersionCounters] | None = None  # its serving counters, for guardrails
