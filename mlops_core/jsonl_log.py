"""Append-only JSON-lines logs: one writer, one reader, and the decision log built on them.

Every decision the platform takes (drift streaks, retraining triggers, rollout steps, promotions,
rollbacks) is one line with an `event` and an `event_id`; `read_json_lines` skips a torn last line
left by a crash, so a reader never fails on a log that is still being written.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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
