"""A model version's holdout metrics per slice: per category of one column (the evaluate step's
`slice_column`), kept by the registry beside the version (`slices.json`) so they outlive the run.

`metrics` maps each category, as text, to the task's metrics on the holdout rows of that category
(`rows`: how many); rows whose value is missing form their own slice, `MISSING_SLICE`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The slice of the rows whose slice column is missing.
MISSING_SLICE = "__missing__"

# The metrics a summary of slices shows (the KFP metrics, the dashboard's table), per task; every
# slice also counts its holdout `rows`.
SHOWN_SLICE_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "accuracy"),
    "multiclass": ("accuracy", "macro_f1"),
    "regression": ("rmse", "mae"),
}


@dataclass(frozen=True)
class SliceMetrics:
    column: str
    task: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def shown(self) -> tuple[str, ...]:
        """The metrics to show per slice: the task's (`SHOWN_SLICE_METRICS`)."""
        return SHOWN_SLICE_METRICS.get(self.task, ())

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "task": self.task, "metrics": self.metrics}

    @classmethod
    def from_dict(cls, doc: Any) -> SliceMetrics:
        """Read a `to_dict` document; a ValueError says what is wrong with it."""
        if not isinstance(doc, dict) or not isinstance(doc.get("column"), str):
            raise ValueError('expected {"column": <text>, "task": <text>, "metrics": {...}}')
        metrics = doc.get("metrics")
        if not isinstance(metrics, dict) or not all(isinstance(m, dict) for m in metrics.values()):
            raise ValueError("`metrics` is not a mapping of category to metrics")
        try:
            read = {str(k): {str(n): _number(v) for n, v in m.items()} for k, m in metrics.items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"a slice metric is not a number: {e}") from e
        return cls(column=doc["column"], task=str(doc.get("task", "")), metrics=read)


def _number(value: Any) -> float:
    if value is None:  # a metric a slice cannot have (an AUC over one class), written as null
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r}")
    return float(value)
