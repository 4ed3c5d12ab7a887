"""The audit trail's prediction log: which version served each request.

- `PredictionLog` (a `PredictionObserver`): one line per scored request — request id, model,
  version, the InferenceService revision that served it (Knative's `K_REVISION` on the cluster,
  `local` otherwise), rows, time, and the prediction score of each row
  (`mlops_core.target.prediction_score`), which a platform-level label join needs; for a request
  by entity key, also the feature values the feature store gave each row (`features_used`). The request path pays a JSON encode and one write. The file
  rotates by size (`MLOPS_PREDICTION_LOG_MAX_BYTES`, keeping `MLOPS_PREDICTION_LOG_BACKUPS` older
  files `predictions.1.jsonl` ...), so a long-running server's disk use is bounded.
- decisions go to `mlops_core.jsonl_log.DecisionLog`.

`mlops_control.audit.audit_request` joins both with the registry's lineage (version -> run -> data).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mlops_core.jsonl_log import JsonLinesWriter


def serving_revision() -> str:
    """The revision serving this process: Knative's K_REVISION on the cluster, else `local`."""
    return os.environ.get("K_REVISION") or os.environ.get("MLOPS_SERVING_REVISION") or "local"


class PredictionLog:
    """Observer: one JSON line per scored request."""

    def __init__(
        self,
        path: str | Path,
        *,
        model: str,
        revision: str | None = None,
        max_bytes: int = 0,
        backups: int = 0,
    ) -> None:
        self.model = model
        self.revision = revision or serving_revision()
        self.writer = JsonLinesWriter(path, max_bytes=max_bytes, backups=backups)

    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
        features_used: list[dict[str, Any]] | None = None,
    ) -> None:
        ids = [request_ids] if isinstance(request_ids, str) else list(request_ids)
        scores = np.asarray(probabilities, dtype=float).reshape(len(rows), -1)[:, 0].tolist()
        for i, rid in enumerate(ids):
            line = {
                "request_id": rid,
                "model": self.model,
                "version": str(model_version),
                "revision": self.revision,
                "rows": len(rows) if len(ids) == 1 else 1,
                "at": time.time(),
                "scores": scores if len(ids) == 1 else scores[i : i + 1],
            }
            if features_used is not None:  # looked up: the client never saw these values
                line["features_used"] = features_used if len(ids) == 1 else features_used[i : i + 1]
            self.writer.write(line)

    def flush(self) -> None:
        self.writer.flush()
