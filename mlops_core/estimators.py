"""Which estimators each task offers, by a name that says what it fits.

A light module (no scikit-learn import), so the CLI can refuse an estimator that does not fit the
task before any data is read; components/train.py builds the model each name stands for.
"""

from __future__ import annotations

from mlops_core.errors import InvalidInputError
from mlops_core.target import TASK_CHOICES, TASKS

_CLASSIFIERS = ("xgboost", "hist_gradient_boosting", "logistic_regression")
ESTIMATORS_BY_TASK: dict[str, tuple[str, ...]] = {
    "binary": _CLASSIFIERS,
    "multiclass": _CLASSIFIERS,
    "regression": ("xgboost", "hist_gradient_boosting", "ridge", "linear_regression"),
}
ESTIMATORS: tuple[str, ...] = tuple(dict.fromkeys(e for t in TASKS for e in ESTIMATORS_BY_TASK[t]))
LINEAR_ESTIMATORS = frozenset({"logistic_regression", "ridge", "linear_regression"})  # scaled input


class EstimatorError(InvalidInputError):
    """The estimator's name is unknown, or it does not fit the task."""


def estimators_help() -> str:
    """The choices per task, for the CLI's help."""
    return "; ".join(f"{task}: {' | '.join(names)}" for task, names in _by_kind().items())


def _by_kind() -> dict[str, tuple[str, ...]]:
    return {"binary, multiclass": _CLASSIFIERS, "regression": ESTIMATORS_BY_TASK["regression"]}


def check_estimator(estimator: str, task: str) -> None:
    """Refuse a name no task offers, or one that `task` (a settled task or "auto") does not."""
    if task not in TASK_CHOICES:
        raise EstimatorError(f"unknown task {task!r}; choose one of {list(TASK_CHOICES)}")
    if estimator not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator {estimator!r}; choose one of {estimators_help()}")
    if task != "auto" and estimator not in ESTIMATORS_BY_TASK[task]:
        raise EstimatorError(
            f"estimator {estimator!r} does not fit a {task} task; "
            f"choose one of {list(ESTIMATORS_BY_TASK[task])}"
        )
