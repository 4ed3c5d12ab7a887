"""The platform-level label join: predictions from the model servers' prediction logs, labels from
the one log every label is posted to, joined by request id.

Each model server writes one line per live request (`serving/monitoring/prediction_log.py`:
request id, version, time, each row's score; mirrored copies are not logged), so the join sees
which version served each prediction wherever its label was posted. A request's label is for its
first row (one row per request is how an experiment's traffic is labelled); the last label posted
for a request id wins. A label the reward cannot read (not one of the model's classes, not a
number) is counted and left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_control.experiments.evidence import LabelledPrediction
from mlops_control.experiments.reward import RewardSpec
from mlops_core.jsonl_log import read_rotated_json_lines
from mlops_core.target import label_key

PREDICTION_LOG = "predictions.jsonl"


@dataclass(frozen=True)
class JoinedPredictions:
    predictions: list[LabelledPrediction]
    unreadable_labels: int


def encode_label(reward: RewardSpec, label: Any) -> float | None:
    """The label as the reward reads it: the class index, or the value (regression)."""
    if reward.task == "regression":
        ok = isinstance(label, int | float) and not isinstance(label, bool)
        return float(label) if ok else None
    keys = [label_key(c) for c in reward.classes]
    key = label_key(label)
    return float(keys.index(key)) if key in keys else None


def read_labels(path: Path) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    if path.exists():
        for doc in read_rotated_json_lines(path):
            labels[str(doc["request_id"])] = doc["label"]
    return labels


def join_labels(
    audit_dir: Path,
    labels_log: Path,
    reward: RewardSpec,
    versions: Iterable[str],
    *,
    since: float,
) -> JoinedPredictions:
    """The live predictions of `versions` made after `since`, each with its label (or None)."""
    wanted = set(versions)
    labels = read_labels(labels_log)
    out: list[LabelledPrediction] = []
    unreadable = 0
    log = audit_dir / PREDICTION_LOG
    if not log.exists():
        return JoinedPredictions(out, 0)
    for doc in read_rotated_json_lines(log):
        version, at, scores = str(doc.get("version")), doc.get("at"), doc.get("scores")
        if version not in wanted or not isinstance(at, int | float) or at <= since or not scores:
            continue
        rid = str(doc["request_id"])
        label = None
        if rid in labels:
            label = encode_label(reward, labels[rid])
            unreadable += label is None
        out.append(LabelledPrediction(rid, version, float(at), float(scores[0]), label))
    return JoinedPredictions(out, unreadable)
