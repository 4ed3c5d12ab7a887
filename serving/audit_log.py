"""The audit trail's two JSON-lines logs: which version served each request, and every decision.

- `PredictionLog` (a `PredictionObserver`): one line per scored request — request id, model,
  version, the InferenceService revision that served it (Knative's `K_REVISION` on the cluster,
  `local` otherwise), rows, time. Lines are written through a buffered file, so the request path
  pays a JSON encode and a buffered write.
- `DecisionLog`: one line per decision with an `event_id` — drift streaks, retraining triggers with
  their run ids, rollout steps, promotions and rollbacks.

`serving.audit.audit_request` joins both with the registry's lineage (version -> run -> data).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def serving_revision() -> str:
    """The revision serving this process: Knative's K_REVISION on the cluster, else `local`."""
    return os.environ.get("K_REVISION") or os.environ.get("MLOPS_SERVING_REVISION") or "local"


class JsonLinesWriter:
    """Append-only JSON lines with a lock; flushed every `flush_every` lines and on close."""

    def __init__(self, path: str | Path, *, flush_every: int = 1) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open for the process's life)
        self._lock = threading.Lock()
        self._flush_every = flush_every
        self._unflushed = 0

    def write(self, doc: dict[str, Any]) -> None:
        line = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with self._lock:
            self._fh.write(line)
            self._unflushed += 1
            if self._unflushed >= self._flush_every:
                self._fh.flush()
                self._unflushed = 0

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()
            self._unflushed = 0

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_json_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of a JSON-lines log (a torn last line from a crash is skipped)."""
    p = Path(path)
    if not p.exists():
        return
    with open(p, "rb") as fh:
        for line in fh:
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                continue


class PredictionLog:
    """Observer: one JSON line per scored request."""

    def __init__(
        self, path: str | Path, *, model: str, revision: str | None = None, flush_every: int = 1
    ) -> None:
        self.model = model
        self.revision = revision or serving_revision()
        self.writer = JsonLinesWriter(path, flush_every=flush_every)

    def observe(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_ids: list[str] | str,
        model_version: str,
    ) -> None:
        ids = [request_ids] if isinstance(request_ids, str) else list(request_ids)
        for rid in ids:
            self.writer.write(
                {
                    "request_id": rid,
                    "model": self.model,
                    "version": str(model_version),
                    "revision": self.revision,
                    "rows": len(rows) if len(ids) == 1 else 1,
                    "at": time.time(),
                }
            )

    def flush(self) -> None:
        self.writer.flush()


class DecisionLog:
    """Every trigger and rollout decision, each with an id and the ids it refers to."""

    def __init__(self, path: str | Path) -> None:
        self.writer = JsonLinesWriter(path, flush_every=1)
        self.path = self.writer.path

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        # `at` is always the decision's own ISO time; a field of that name would be overwritten.
        doc = {"event": event, "event_id": f"evt-{uuid.uuid4().hex[:12]}"} | fields
        doc["at"] = now_iso()
        self.writer.write(doc)
        return doc

    def read(self) -> list[dict[str, Any]]:
        return list(read_json_lines(self.path))
