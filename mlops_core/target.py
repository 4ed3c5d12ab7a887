"""The prediction task and the label encoding: which kind of model a target column asks for, and how
the user's labels map to the class indices a model is trained on.

`settle_target` decides the task (`auto`: from the target's type and number of distinct values,
with the reason said in words), checks that the asked-for task fits the data, and fixes the class
order; the result is stored in the `FeatureSchema` (`task`, `classes`), which travels with every
registered version, so serving answers in the user's own labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from mlops_core.errors import InvalidInputError
from mlops_core.settings import DEFAULT_MAX_CLASSES

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[str, ...] = get_args(Task)
TASK_CHOICES: tuple[str, ...] = ("auto", *TASKS)

# A numeric target with at most this many distinct integer values is read as classes by `auto`.
MAX_AUTO_CLASSES = 20
# Labels `auto` takes for the positive class of a binary target, compared case-insensitively.
POSITIVE_WORDS = ("1", "true", "yes", "y", "positive", "pos")

# The metric each task's gate compares when the user names none.
DEFAULT_PRIMARY_METRIC: dict[str, str] = {
    "binary": "roc_auc",
    "multiclass": "macro_f1",
    "regression": "rmse",
}


# A number written as a number: no leading zeros ("007" is a code, not 7), no leading "+", no
# surrounding spaces. Decimals and exponents are numbers too ("0.5", "1e3", "-2.25").
_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$")


def labels_as_written(text: pd.Series) -> pd.Series:
    """A target column read from text (CSV) in the type its values are written in: numbers when
    every present value is a number written as one ("10", "-3", "0.5"), else the text itself
    ("007", "010" and "10" stay three different string labels). Missing values stay missing."""
    present = text.dropna()
    if present.empty or not all(isinstance(v, str) for v in present):
        return text
    if all(_NUMBER.match(v) for v in present):  # int64, or float64 with NaN where missing
        return pd.to_numeric(text)
    return text


class TargetError(InvalidInputError):
    """The target column does not fit the task (one class, a float target for a classifier...)."""


@dataclass(frozen=True)
class TargetSpec:
    task: Task
    classes: tuple[Any, ...]  # the user's labels in class-index order; () for regression
    reason: str  # why this task and, for binary, this positive class
    dropped_missing: int = 0  # rows without a target, dropped before training


def _plain(value: Any) -> Any:
    """A JSON-friendly Python scalar (numpy ints/bools/floats become int/bool/float)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def label_key(value: Any) -> str:
    """One spelling per label: 1, 1.0 and np.int64(1) are the same class; True stays True."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _is_integral(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return True
    if not pd.api.types.is_numeric_dtype(values):
        return False
    return bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))


def _positive_first_guess(labels: list[Any]) -> tuple[Any, str]:
    for label in labels:
        if str(label).strip().lower() in POSITIVE_WORDS:
            return label, f"{label!r} reads as the positive outcome"
    return labels[-1], f"{labels[-1]!r} is the last label in sorted order"


def _match_label(value: str, labels: list[Any]) -> Any:
    for label in labels:
        if label_key(label) == value or str(label).lower() == value.lower():
            return label
    raise TargetError(f"--positive-class {value!r} is not a value of the target; it holds {labels}")


def settle_target(
    y: pd.Series,
    *,
    task: str = "auto",
    positive_class: str = "",
    target: str = "target",
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> TargetSpec:
    """Decide the task and the class order for the target values `y` (missing values ignored);
    a classifier's target may hold at most `max_classes` labels."""
    if task not in TASK_CHOICES:
        raise TargetError(f"unknown task {task!r}; choose one of {list(TASK_CHOICES)}")
    present = y.dropna()
    dropped = len(y) - len(present)
    if present.empty:
        raise TargetError(f"target {target!r} has no values")
    numeric = pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present)
    distinct = present.unique()
    n = len(distinct)
    if task == "auto":
        if not numeric:
            task, why = ("binary" if n == 2 else "multiclass"), f"{n} distinct non-numeric labels"
        elif _is_integral(present) and n <= MAX_AUTO_CLASSES:
            task = "binary" if n == 2 else "multiclass"
            why = f"{n} distinct integer values (at most {MAX_AUTO_CLASSES} read as classes)"
        else:
            task, why = "regression", f"numeric with {n} distinct values"
        if n < 2:
            raise TargetError(
                f"target {target!r} has a single value {distinct[0]!r}: nothing to learn"
            )
    else:
        why = "asked for"
    if task == "regression":
        if not numeric:
            raise TargetError(
                f"target {target!r} is not numeric (e.g. {distinct[0]!r}); regression needs numbers"
            )
        if n < 2:
            raise TargetError(f"target {target!r} is constant: nothing to learn")
        return TargetSpec("regression", (), f"regression: {why}", dropped)
    if numeric and not _is_integral(present):
        raise TargetError(
            f"target {target!r} holds non-integer numbers (e.g. {present.iloc[0]!r}): a {task} "
            "classifier needs labels; use --task regression or --task auto"
        )
    if n < 2:
        raise TargetError(f"target {target!r} has a single class {distinct[0]!r}: nothing to learn")
    if n > max_classes:
        raise TargetError(
            f"target {target!r} has {n:,} distinct labels, over the limit of {max_classes:,} "
            "classes (MLOPS_MAX_CLASSES): training memory grows with classes x rows; group rare "
            "labels, or use --task regression if the target is a quantity"
        )
    plain = [_plain(v) for v in distinct]
    if numeric:  # integral numbers (checked above): 1.0 (a column that had NaN) is the class 1
        plain = [int(v) for v in plain]
    labels = sorted(plain, key=lambda v: (str(type(v)), v))
    if task == "binary":
        if n != 2:
            raise TargetError(
                f"--task binary needs exactly 2 classes; target {target!r} has {n}: "
                f"{labels[:10]}; use --task multiclass"
            )
        if positive_class:
            positive, how = _match_label(positive_class, labels), "--positive-class"
        else:
            positive, how = _positive_first_guess(labels)
        negative = next(v for v in labels if v != positive)
        reason = (
            f"binary: {why}; positive class {positive!r} ({how}); pass --positive-class to choose"
        )
        return TargetSpec("binary", (negative, positive), reason, dropped)
    if positive_class:
        raise TargetError("--positive-class applies to a binary task only")
    return TargetSpec("multiclass", tuple(labels), f"multiclass: {why}: {labels}", dropped)


def encode_labels(y: pd.Series, classes: tuple[Any, ...], *, target: str = "target") -> np.ndarray:
    """Class indices for the user's labels; a label outside `classes` is an error that names it."""
    index = {label_key(c): i for i, c in enumerate(classes)}
    keys = y.map(label_key)
    unknown = sorted(set(keys) - set(index))
    if unknown:
        raise TargetError(
            f"target {target!r} holds {unknown[:5]}, which the model was not trained on "
            f"(its classes are {list(classes)})"
        )
    indices: np.ndarray = keys.map(index).to_numpy(dtype=np.int64)
    return indices


def prediction_score(output: np.ndarray, task: str) -> np.ndarray:
    """One number per row that monitoring watches: the positive-class probability (binary), the
    predicted class index (multiclass: its distribution is the class shares) or the value."""
    output = np.asarray(output, dtype=float)
    if task == "binary":
        return output[:, 1] if output.ndim == 2 else output
    if task == "multiclass":
        classes: np.ndarray = np.argmax(output, axis=1).astype(float)
        return classes
    return output


def decode_labels(indices: np.ndarray, classes: tuple[Any, ...]) -> list[Any]:
    return [classes[int(i)] for i in indices]
