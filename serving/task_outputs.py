"""What a served model answers, per task, in the user's own labels.

The predictor's one call into the model (`TaskOutputs.predict`) returns the model's raw output:
the positive-class probability (binary, one per row), the class probabilities (multiclass, one row
of them per row) or the predicted value (regression). This module turns it into

- V1: binary `{"probability", "label"}`; multiclass `{"label", "probabilities": {label: p}}`;
  regression `{"value"}`. Labels are the training data's own (strings, booleans or integers),
  from the label encoding the version's schema carries;
- V2: typed output tensors (`probability`/`label`, `probabilities` [rows, classes]/`label`,
  `value`), and the same list as the model's `/v2/models/<name>` output metadata;
- the one score per row that metrics and observers watch (`mlops_core.target.prediction_score`):
  the positive-class probability, the predicted class index, or the value;
- `:explain` bodies: contributions per feature (per class for multiclass).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferOutput

from mlops_core.schema import FeatureSchema
from mlops_core.target import prediction_score
from serving.explanation import Explanation

_UNITS = {
    "binary": "log-odds",
    "multiclass": "per-class margin (softmax logit)",
    "regression": "target units",
}


def _v2_label_datatype(classes: tuple[Any, ...]) -> str:
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES"


class TaskOutputs:
    def __init__(self, schema: FeatureSchema, *, threshold: float) -> None:
        self.task = schema.task
        self.classes = schema.label_classes
        self.threshold = threshold
        self.label_datatype = _v2_label_datatype(self.classes) if self.classes else ""

    # --- the model -----------------------------------------------------------------------------
    def predict(self, model: Any, rows: np.ndarray) -> np.ndarray:
        """`model`: the Pipeline, or anything with its `predict_proba` (classifiers) / `predict`."""
        if self.task == "binary":
            return model.predict_proba(rows)[:, 1]
        if self.task == "multiclass":
            return np.asarray(model.predict_proba(rows), dtype=np.float64)
        return np.asarray(model.predict(rows), dtype=np.float64)

    def scores(self, outputs: np.ndarray) -> np.ndarray:
        return outputs if self.task == "binary" else prediction_score(outputs, self.task)

    def label_indices(self, outputs: np.ndarray) -> np.ndarray:
        if self.task == "binary":
            return (outputs >= self.threshold).astype(np.int64)
        return np.argmax(outputs, axis=1)

    def labels(self, outputs: np.ndarray) -> list[Any]:
        return [self.classes[int(i)] for i in self.label_indices(outputs)]

    # --- V1 ------------------------------------------------------------------------------------
    def v1_predictions(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        if self.task == "regression":
            return [{"value": v} for v in outputs.tolist()]
        labels = self.labels(outputs)
        if self.task == "binary":
            return [
                {"probability": p, "label": y}
                for p, y in zip(outputs.tolist(), labels, strict=True)
            ]
        names = [str(c) for c in self.classes]
        return [
            {"label": y, "probabilities": dict(zip(names, p, strict=True))}
            for y, p in zip(labels, outputs.tolist(), strict=True)
        ]

    # --- V2 ------------------------------------------------------------------------------------
    def v2_outputs(self, outputs: np.ndarray) -> list[InferOutput]:
        n = len(outputs)
        if self.task == "regression":
            return [InferOutput("value", [n], "FP64", outputs.tolist())]
        labels = self.labels(outputs)
        if self.label_datatype == "BYTES":
            labels = [str(y) for y in labels]
        label = InferOutput("label", [n], self.label_datatype, labels)
        if self.task == "binary":
            return [InferOutput("probability", [n], "FP64", outputs.tolist()), label]
        k = len(self.classes)
        return [InferOutput("probabilities", [n, k], "FP64", outputs.ravel().tolist()), label]

    def output_types(self) -> list[dict[str, Any]]:
        if self.task == "regression":
            return [{"name": "value", "datatype": "FP64", "shape": [-1]}]
        label = {"name": "label", "datatype": self.label_datatype, "shape": [-1]}
        if self.task == "binary":
            return [{"name": "probability", "datatype": "FP64", "shape": [-1]}, label]
        k = len(self.classes)
        return [{"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}, label]

    # --- :explain ------------------------------------------------------------------------------
    @property
    def explanation_units(self) -> str:
        return _UNITS[self.task]

    def v1_explanations(
        self, outputs: np.ndarray, exp: Explanation, names: list[str]
    ) -> list[dict[str, Any]]:
        answers = self.v1_predictions(outputs)
        if self.task != "multiclass":
            return [
                answer
                | {
                    "margin": m,
                    "bias": b,
                    "residual": r,
                    "contributions": dict(zip(names, c, strict=True)),
                }
                for answer, m, b, r, c in zip(
                    answers,
                    exp.margin.tolist(),
                    exp.bias.tolist(),
                    exp.residual.tolist(),
                    exp.contributions.tolist(),
                    strict=True,
                )
            ]
        classes = [str(c) for c in self.classes]

        def per_class(values: list[Any]) -> dict[str, Any]:
            return dict(zip(classes, values, strict=True))

        return [
            answer
            | {
                "margin": per_class(m),
                "bias": per_class(b),
                "residual": per_class(r),
                "contributions": per_class([dict(zip(names, row, strict=True)) for row in c]),
            }
            for answer, m, b, r, c in zip(
                answers,
                exp.margin.tolist(),
                exp.bias.tolist(),
                exp.residual.tolist(),
                exp.contributions.tolist(),
                strict=True,
            )
        ]
