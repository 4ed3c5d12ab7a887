"""What one labelled prediction is worth to an experiment: the task's own reward, or the user's.

Predictions arrive as the number monitoring records per row (`mlops_core.target.prediction_score`):
the positive-class probability (binary), the predicted class index (multiclass), the value
(regression). Labels arrive as the class index or the value (`serving/monitoring/feedback.py`).

- `correct`: 1 when the predicted class is the label, else 0 (classification).
- `log_loss`: minus the log loss of the label's probability (binary).
- `absolute_error`: minus |prediction - label| (regression).
- `table`: the user's table, label -> predicted label -> reward, in the user's own labels; policy
  as data, so a false negative can cost more than a false positive without any code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mlops_control.experiments.errors import ExperimentPolicyError
from mlops_core.settings import DEFAULT_DECISION_THRESHOLD
from mlops_core.target import TASKS, label_key

RewardKind = Literal["correct", "log_loss", "absolute_error", "table"]
REWARD_KINDS: tuple[str, ...] = ("correct", "log_loss", "absolute_error", "table")
# Which rewards fit which task; the first is the task's default.
TASK_REWARDS: dict[str, tuple[str, ...]] = {
    "binary": ("correct", "log_loss", "table"),
    "multiclass": ("correct", "table"),
    "regression": ("absolute_error",),
}
_P_EPS = 1e-7  # as the feedback store's log loss: a certain wrong answer costs 16 nats, not inf


class RewardError(ExperimentPolicyError):
    """The reward definition does not fit the task or its labels."""


@dataclass(frozen=True, kw_only=True)
class RewardSpec:
    task: str
    kind: str = ""  # empty: the task's default
    classes: tuple[Any, ...] = ()  # the user's labels in class-index order (classification)
    threshold: float = DEFAULT_DECISION_THRESHOLD  # binary: the probability at which the prediction is the positive class
    table: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise RewardError(f"unknown task {self.task!r}; choose one of {list(TASKS)}")
        kind = self.kind or TASK_REWARDS[self.task][0]
        object.__setattr__(self, "kind", kind)
        if kind not in TASK_REWARDS[self.task]:
            raise RewardError(
                f"reward {kind!r} does not fit a {self.task} task; "
                f"choose one of {list(TASK_REWARDS[self.task])}"
            )
        if self.task != "regression" and len(self.classes) < 2:
            raise RewardError(f"a {self.task} reward needs the model's classes, got {self.classes}")
        if kind == "table":
            self._check_table()

    def _check_table(self) -> None:
        keys = [label_key(c) for c in self.classes]
        table = {
            label_key(k): {label_key(p): v for p, v in row.items()} for k, row in self.table.items()
        }
        missing = [(a, b) for a in keys for b in keys if b not in table.get(a, {})]
        if missing:
            raise RewardError(
                f"the reward table must give every (label, prediction) pair of {keys}; "
                f"missing {missing[:4]}"
            )
        extra = sorted(set(table) - set(keys)) + sorted(
            {p for row in table.values() for p in row} - set(keys)
        )
        if extra:
            raise RewardError(f"the reward table names labels the model does not have: {extra}")
        bad = [v for row in table.values() for v in row.values() if not math.isfinite(float(v))]
        if bad:
            raise RewardError(f"rewards must be finite numbers, got {bad[:3]}")
        object.__setattr__(self, "table", table)

    def matrix(self) -> np.ndarray:
        """The table as an array indexed [label index, predicted index]."""
        keys = [label_key(c) for c in self.classes]
        return np.array([[float(self.table[a][b]) for b in keys] for a in keys])

    def rewards(self, labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """One reward per labelled prediction."""
        y = np.asarray(labels, dtype=float)
        s = np.asarray(predictions, dtype=float)
        if y.shape != s.shape:
            raise RewardError(f"{len(y)} labels for {len(s)} predictions")
        if self.kind == "absolute_error":
            return np.asarray(-np.abs(s - y), dtype=float)
        if self.kind == "log_loss":
            p = np.clip(s, _P_EPS, 1.0 - _P_EPS)
            return np.asarray(np.where(y == 1, np.log(p), np.log1p(-p)), dtype=float)
        predicted = (s >= self.threshold).astype(int) if self.task == "binary" else s.astype(int)
        if self.kind == "correct":
            return np.asarray(predicted == y.astype(int), dtype=float)
        return np.asarray(self.matrix()[y.astype(int), predicted], dtype=float)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "kind": self.kind,
            "classes": list(self.classes),
            "threshold": self.threshold,
            "table": self.table,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RewardSpec:
        try:
            return cls(**{**doc, "classes": tuple(doc.get("classes", ()))})
        except TypeError as e:
            raise RewardError(f"invalid reward definition {doc}: {e}") from e
