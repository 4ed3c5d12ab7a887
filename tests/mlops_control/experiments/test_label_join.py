"""The label join: predictions from a model server's prediction log (written by the serving
PredictionLog itself), labels from the router's label log, joined by request id."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mlops_control.experiments.label_join import join_labels
from mlops_control.experiments.reward import RewardSpec
from mlops_core.jsonl_log import JsonLinesWriter
from serving.monitoring.prediction_log import PredictionLog

REWARD = RewardSpec(task="binary", classes=("stay", "churn"))


def test_labels_join_by_request_id_per_version(tmp_path: Path) -> None:
    logs = {v: PredictionLog(tmp_path / "predictions.jsonl", model="m") for v in ("1", "2")}
    rows = np.zeros((1, 3), dtype=object)
    logs["1"].observe(rows, np.array([0.9]), "early", "1")
    since = time.time()
    time.sleep(0.01)
    logs["1"].observe(rows, np.array([0.8]), "a", "1")
    logs["2"].observe(rows, np.array([0.2]), "b", "2")
    logs["2"].observe(rows, np.array([0.6]), "c", "2")
    logs["1"].observe(rows, np.array([0.4]), "d", "3")  # not in the experiment
    for log in logs.values():
        log.flush()
    labels = JsonLinesWriter(tmp_path / "labels.jsonl")
    labels.write({"request_id": "a", "label": "stay"})
    labels.write({"request_id": "a", "label": "churn"})  # the last label wins
    labels.write({"request_id": "b", "label": "maybe"})  # not a class: counted, left out
    labels.write({"request_id": "early", "label": "churn"})
    labels.close()

    joined = join_labels(tmp_path, tmp_path / "labels.jsonl", REWARD, ["1", "2"], since=since)
    got = {p.request_id: (p.version, p.prediction, p.label) for p in joined.predictions}
    assert got == {"a": ("1", 0.8, 1.0), "b": ("2", 0.2, None), "c": ("2", 0.6, None)}
    assert joined.unreadable_labels == 1
    assert all(p.predicted_at > since for p in joined.predictions)


def test_no_log_yet_is_an_empty_join(tmp_path: Path) -> None:
    joined = join_labels(tmp_path, tmp_path / "labels.jsonl", REWARD, ["1"], since=0.0)
    assert joined.predictions == [] and joined.unreadable_labels == 0
