"""Evaluate: holdout metrics, per-slice metrics and the ML tests a candidate must pass, per task.

- metrics: binary: ROC AUC, PR AUC, log loss, Brier score, accuracy/precision/recall at a
  threshold; multiclass: accuracy, macro F1, log loss, per-class recall and a confusion matrix;
  regression: RMSE, MAE, R² and a residual summary;
- slices: the same metrics per category of a chosen column;
- differential test: the candidate against the current champion on the SAME holdout;
- extreme-input test: min/max values, all-missing rows, unseen categories, values far outside the
  schema's range: no crash, every output finite (probabilities in [0, 1]);
- invariance test: changing a feature the schema marks `invariant` moves predictions by at most a
  tolerance (a regression's shift in units of the holdout target's standard deviation).
A test with nothing to test (no champion yet, no feature marked invariant) is `skipped`, with the
reason, and never counts as passed.

scikit-learn and the model code are imported inside the functions that use them: the gate and
register tasks import this module for its data types only, and each task pays its own imports.

Everything returns plain data; `log_evaluation` writes it into KFP's Metrics/ClassificationMetrics
artifacts through their public methods (duck-typed, so this module does not import KFP).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_core.schema import FeatureSchema
from mlops_core.slices import MISSING_SLICE, SHOWN_SLICE_METRICS, SliceMetrics
from mlops_core.step_timing import timed_step
from mlops_core.target import DEFAULT_PRIMARY_METRIC

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "precision": True,
    "recall": True,
    "f1": True,
    "macro_f1": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}
# The metrics a gate may compare, per task.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
_ROC_POINTS = 101  # points kept on the ROC curve artifact (the UI does not need thousands)


@dataclass(frozen=True)
class MLTest:
    name: str
    passed: bool
    detail: str
    values: dict[str, float] = field(default_factory=dict)
    skipped: bool = False  # nothing to test: neither passed nor failed

    @property
    def failed(self) -> bool:
        return not self.passed and not self.skipped

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "passed" if self.passed else "failed"


def skipped_test(name: str, reason: str) -> MLTest:
    return MLTest(name, False, reason, skipped=True)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    slices: dict[str, dict[str, float]]
    slice_column: str
    threshold: float
    tests: tuple[MLTest, ...]
    champion_version: int | None
    champion_metrics: dict[str, float] | None
    roc_curve: dict[str, list[float]]
    confusion_matrix: list[list[int]]
    holdout_rows: int
    task: str = "binary"
    primary_metric: str = ""  # the metric the differential test used (the task's default if unset)
    classes: list[Any] = field(default_factory=list)

    @property
    def tests_passed(self) -> bool:
        """No test failed (a skipped test does not count either way)."""
        return not any(t.failed for t in self.tests)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tests_passed": self.tests_passed}

    def slice_record(self) -> SliceMetrics | None:
        """The per-slice metrics as the registry keeps them (None: no slice column)."""
        if not self.slice_column or not self.slices:
            return None
        return SliceMetrics(column=self.slice_column, task=self.task, metrics=self.slices)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Evaluation:
        doc = {k: v for k, v in doc.items() if k != "tests_passed"}
        doc["tests"] = tuple(MLTest(**t) for t in doc["tests"])
        return cls(**doc)


def classification_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Threshold-free and thresholded metrics; AUCs are NaN where only one class is present."""
    from sklearn import metrics as skm

    y = np.asarray(y, int)
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p, pos_label=1)) if len(y) else float("nan"),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "rows": float(len(y)),
    }


def multiclass_metrics(y: np.ndarray, proba: np.ndarray, classes: list[Any]) -> dict[str, float]:
    """Accuracy, macro F1, log loss and each class's recall (`recall/<label>`)."""
    from sklearn import metrics as skm

    y = np.asarray(y, int)
    labels = list(range(len(classes)))
    proba = np.asarray(proba, float)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 outputs sum to 1 within 1e-7 only
    pred = np.argmax(proba, axis=1)
    recalls = skm.recall_score(y, pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else float("nan"),
        "macro_f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, proba, labels=labels)) if len(y) else float("nan"),
        "rows": float(len(y)),
    }
    return out | {f"recall/{c}": float(r) for c, r in zip(classes, recalls, strict=True)}


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R² and a residual (prediction - truth) summary."""
    from sklearn import metrics as skm

    y, pred = np.asarray(y, float), np.asarray(pred, float)
    if not len(y):
        return {"rmse": float("nan"), "mae": float("nan"), "r2": float("nan"), "rows": 0.0}
    residual = pred - y
    p05, p50, p95 = np.percentile(residual, [5, 50, 95])
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
        "mae": float(skm.mean_absolute_error(y, pred)),
        "r2": float(skm.r2_score(y, pred)) if len(y) > 1 else float("nan"),
        "residual_mean": float(residual.mean()),
        "residual_std": float(residual.std()),
        "residual_p05": float(p05),
        "residual_p50": float(p50),
        "residual_p95": float(p95),
        "rows": float(len(y)),
    }


def task_metrics(
    schema: FeatureSchema, y: np.ndarray, output: np.ndarray, threshold: float
) -> dict[str, float]:
    """The task's metrics for encoded targets `y` and the model's raw `output`."""
    if schema.task == "regression":
        return regression_metrics(y, output)
    if schema.task == "multiclass":
        return multiclass_metrics(y, output, list(schema.label_classes))
    return classification_metrics(y, output[:, 1] if output.ndim == 2 else output, threshold)


def slice_metrics(
    df: pd.DataFrame,
    y: np.ndarray,
    output: np.ndarray,
    column: str,
    threshold: float,
    schema: FeatureSchema | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per category of `column` (missing values form their own slice)."""
    if column not in df.columns:
        raise ValueError(f"slice column {column!r} is not in the data; columns: {list(df.columns)}")
    keys = df[column].astype(object).where(df[column].notna(), MISSING_SLICE).astype(str)
    if schema is None:  # a binary model's positive-class probabilities
        return {
            str(k): classification_metrics(y[idx], output[idx], threshold)
            for k, idx in keys.groupby(keys).indices.items()
        }
    return {
        str(k): task_metrics(schema, y[idx], output[idx], threshold)
        for k, idx in keys.groupby(keys).indices.items()
    }


def roc_points(y: np.ndarray, p: np.ndarray) -> dict[str, list[float]]:
    from sklearn import metrics as skm

    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=True)
    if len(fpr) > _ROC_POINTS:
        keep = np.unique(np.linspace(0, len(fpr) - 1, _ROC_POINTS).round().astype(int))
        fpr, tpr, thr = fpr[keep], tpr[keep], thr[keep]
    # roc_curve's first threshold is +inf; KFP stores JSON numbers, so cap it at 1.
    thr = np.minimum(thr, 1.0)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thr.tolist()}


# --- ML tests ----------------------------------------------------------------------------------


def extreme_inputs(schema: FeatureSchema) -> pd.DataFrame:
    """Rows at and beyond the edges of what the schema allows."""
    rows: list[dict[str, Any]] = []

    def row(numeric: str, category: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in schema.features:
            if f.is_numeric:
                lo = f.min if f.min is not None else -1e6
                hi = f.max if f.max is not None else 1e6
                out[f.name] = {
                    "min": lo,
                    "max": hi,
                    "missing": None,
                    "below": lo - 1e6,
                    "above": hi + 1e6,
                }[numeric]
            else:
                out[f.name] = {
                    "first": f.categories[0],
                    "last": f.categories[-1],
                    "missing": None,
                    "unseen": "__never_seen_category__",
                }[category]
        return out

    rows += [row("min", "first"), row("max", "last"), row("missing", "missing")]
    rows += [row("below", "unseen"), row("above", "unseen"), row("min", "unseen")]
    return pd.DataFrame(rows, columns=schema.feature_names)


def extreme_input_test(pipeline: Any, schema: FeatureSchema) -> MLTest:
    from components.train import predict_output

    frame = extreme_inputs(schema)
    try:
        p = np.asarray(predict_output(pipeline, frame, schema), float)
    except Exception as e:  # any crash is the finding this test exists for
        return MLTest("extreme_inputs", False, f"prediction crashed: {type(e).__name__}: {e}")
    rows = f"{len(p)} extreme rows (min/max, all-missing, unseen categories, out of range): "
    if schema.is_classifier:
        ok = bool(
            np.all(np.isfinite(p))
            and np.all((p >= 0) & (p <= 1))
            and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
        )
        what = "all class probabilities finite, in [0, 1], summing to 1"
    else:
        ok = bool(np.all(np.isfinite(p)))
        what = "all predicted values finite"
    detail = rows + (what if ok else f"bad outputs {p.tolist()}")
    return MLTest(
        "extreme_inputs", ok, detail, {"min_p": float(np.min(p)), "max_p": float(np.max(p))}
    )


def invariance_test(
    pipeline: Any, df: pd.DataFrame, schema: FeatureSchema, *, tolerance: float, rows: int = 500
) -> MLTest:
    """Swap each invariant feature through its values; the mean shift must stay <= tolerance.

    The shift is |Δp| (binary), the total variation of the class probabilities (multiclass) or
    |Δvalue| / std(target) (regression).
    """
    from components.train import predict_output

    invariant = [f for f in schema.features if f.invariant]
    if not invariant:
        return skipped_test(
            "invariance",
            "skipped: the schema marks no feature invariant, so there is nothing to test",
        )
    sample = df.sample(n=min(rows, len(df)), random_state=0) if len(df) else df
    scale = 1.0
    if schema.task == "regression":
        scale = float(np.std(schema.encode_target(df[schema.target]))) or 1.0

    def predict_proba(_: Any, frame: pd.DataFrame, __: Any) -> np.ndarray:
        out = np.asarray(predict_output(pipeline, frame, schema), float)
        return out / scale if out.ndim == 1 else out

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a - b) if a.ndim == 1 else 0.5 * np.abs(a - b).sum(axis=1)

    base = predict_proba(pipeline, sample, schema)
    values: dict[str, float] = {}
    failures = []
    for f in invariant:
        if f.is_numeric:
            lo = f.min if f.min is not None else float(pd.to_numeric(sample[f.name]).min())
            hi = f.max if f.max is not None else float(pd.to_numeric(sample[f.name]).max())
            alternatives: list[Any] = [lo, (lo + hi) / 2, hi]
        else:
            alternatives = list(f.categories)
        shifts = []
        for v in alternatives:
            changed = sample.assign(**{f.name: v})
            shifts.append(distance(predict_proba(pipeline, changed, schema), base))
        shift = np.concatenate(shifts)
        mean_shift, max_shift = float(shift.mean()), float(shift.max())
        values[f"{f.name}_mean_shift"] = mean_shift
        values[f"{f.name}_max_shift"] = max_shift
        if mean_shift > tolerance:
            failures.append(f"{f.name} moves predictions by {mean_shift:.4f} on average")
    names = [f.name for f in invariant]
    detail = (
        f"invariant features {names}: mean shift within {tolerance}"
        if not failures
        else "; ".join(failures) + f" (tolerance {tolerance})"
    )
    return MLTest("invariance", not failures, detail, values)


def differential_test(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    *,
    primary_metric: str,
    max_regression: float,
    champion_version: int | None = None,
) -> MLTest:
    """The candidate must not be worse than the champion on the same holdout beyond a tolerance."""
    if champion is None:
        return skipped_test("differential", "skipped: no champion yet, nothing to compare against")
    higher = HIGHER_IS_BETTER[primary_metric]
    c, k = candidate[primary_metric], champion[primary_metric]
    delta = (c - k) if higher else (k - c)  # positive = candidate better
    passed = bool(delta >= -max_regression)
    detail = (
        f"{primary_metric} candidate {c:.4f} vs champion v{champion_version} {k:.4f} on the same "
        f"holdout (improvement {delta:+.4f}, allowed regression {max_regression})"
    )
    return MLTest(
        "differential", passed, detail, {"candidate": c, "champion": k, "improvement": delta}
    )


def resolve_primary_metric(primary_metric: str, task: str) -> str:
    """The metric the gate compares: the one asked for (checked against the task) or its default."""
    metric = primary_metric or DEFAULT_PRIMARY_METRIC[task]
    if metric not in TASK_METRICS[task]:
        raise ValueError(
            f"primary metric {metric!r} does not apply to a {task} model; choose one of "
            f"{list(TASK_METRICS[task])}"
        )
    return metric


def evaluate_model(
    pipeline: Any,
    holdout: pd.DataFrame,
    schema: FeatureSchema,
    *,
    threshold: float,
    slice_column: str,
    primary_metric: str,
    max_regression: float,
    invariance_tolerance: float,
    champion: Any | None = None,
    champion_schema: FeatureSchema | None = None,
    champion_version: int | None = None,
) -> Evaluation:
    from sklearn import metrics as skm

    from components.train import predict_output

    primary_metric = resolve_primary_metric(primary_metric, schema.task)
    y = schema.encode_target(holdout[schema.target])  # an unseen class is an error naming it
    out = np.asarray(predict_output(pipeline, holdout, schema), float)
    metrics = task_metrics(schema, y, out, threshold)
    slice_column = slice_column or (
        schema.categorical_features[0].name if schema.categorical_features else ""
    )
    slices = slice_metrics(holdout, y, out, slice_column, threshold, schema) if slice_column else {}
    champion_metrics = None
    if champion is not None:
        champ_schema = champion_schema or schema
        if (champ_schema.task, champ_schema.label_classes) != (schema.task, schema.label_classes):
            raise ValueError(
                f"the champion v{champion_version} is a {champ_schema.task} model with classes "
                f"{list(champ_schema.label_classes)}; this data asks for a {schema.task} model with "
                f"{list(schema.label_classes)}: train under another model name"
            )
        p_champ = np.asarray(predict_output(champion, holdout, champ_schema), float)
        champion_metrics = task_metrics(schema, y, p_champ, threshold)
    tests = (
        differential_test(
            metrics,
            champion_metrics,
            primary_metric=primary_metric,
            max_regression=max_regression,
            champion_version=champion_version,
        ),
        extreme_input_test(pipeline, schema),
        invariance_test(pipeline, holdout, schema, tolerance=invariance_tolerance),
    )
    if schema.task == "regression":
        confusion: list[list[int]] = []
    else:
        pred = (out[:, 1] >= threshold).astype(int) if schema.task == "binary" else out.argmax(1)
        labels = list(range(len(schema.label_classes)))
        confusion = skm.confusion_matrix(y, pred, labels=labels).astype(int).tolist()
    return Evaluation(
        metrics=metrics,
        slices=slices,
        slice_column=slice_column,
        threshold=threshold,
        tests=tests,
        champion_version=champion_version,
        champion_metrics=champion_metrics,
        roc_curve=roc_points(y, out[:, 1]) if schema.task == "binary" else {},
        confusion_matrix=confusion,
        holdout_rows=len(holdout),
        task=schema.task,
        primary_metric=primary_metric,
        classes=list(schema.label_classes),
    )


@timed_step("evaluate")
def evaluate_step(
    *,
    model_path: str,
    holdout_path: str,
    schema_path: str,
    evaluation_path: str,
    registry_uri: str,
    model_name: str,
    threshold: float,
    slice_column: str,
    primary_metric: str,
    max_regression: float,
    invariance_tolerance: float,
    metrics_sink: Any = None,
    classification_sink: Any = None,
) -> Evaluation:
    """The pipeline step: evaluate the candidate and the current champion on the same holdout.

    The champion is loaded through the registry, which refuses an artifact whose sha256 changed.
    """
    from mlops_core.registry import ModelRegistry, load_artifact

    schema = FeatureSchema.load(schema_path)
    holdout = pd.read_parquet(holdout_path)
    candidate = load_artifact(model_path)
    champion = champion_schema = champion_version = None
    if registry_uri and model_name:
        registry = ModelRegistry(registry_uri)
        champion_version = registry.champion(model_name)
        if champion_version is not None:
            champion_schema = registry.schema(model_name, champion_version)
            missing = [c for c in champion_schema.feature_names if c not in holdout.columns]
            if missing:
                raise ValueError(
                    f"the champion v{champion_version} needs columns {missing} that this data "
                    "lacks; train under another model name or supply those columns"
                )
            champion = registry.load_model(model_name, champion_version)
    evaluation = evaluate_model(
        candidate,
        holdout,
        schema,
        threshold=threshold,
        slice_column=slice_column,
        champion=champion,
        champion_schema=champion_schema,
        champion_version=champion_version,
        primary_metric=primary_metric,
        max_regression=max_regression,
        invariance_tolerance=invariance_tolerance,
    )
    with open(evaluation_path, "w") as fh:
        json.dump(evaluation.to_dict(), fh, indent=2)
    if metrics_sink is not None and classification_sink is not None:
        log_evaluation(evaluation, metrics_sink, classification_sink)
    return evaluation


def log_evaluation(evaluation: Evaluation, metrics: Any, classification: Any) -> None:
    """Write into KFP `Metrics` and `ClassificationMetrics` outputs so the KFP UI shows them."""
    for name, value in evaluation.metrics.items():
        if np.isfinite(value):
            metrics.log_metric(name, round(float(value), 6))
    shown = (*SHOWN_SLICE_METRICS[evaluation.task], "rows")
    for key, sm in evaluation.slices.items():
        for name in shown:
            if np.isfinite(sm.get(name, float("nan"))):
                metrics.log_metric(f"{evaluation.slice_column}={key}/{name}", round(sm[name], 6))
    for t in evaluation.tests:
        if not t.skipped:  # a skipped test has no value: neither 1 nor 0
            metrics.log_metric(f"test/{t.name}", 1.0 if t.passed else 0.0)
    if evaluation.task == "binary":
        roc = evaluation.roc_curve
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    if evaluation.confusion_matrix:
        names = (
            [f"{evaluation.classes[0]} (negative)", f"{evaluation.classes[1]} (positive)"]
            if evaluation.task == "binary"
            else [str(c) for c in evaluation.classes]
        )
        classification.log_confusion_matrix(names, evaluation.confusion_matrix)
