"""Append-only JSON-lines logs: one writer, one reader, and the decision log built on them.

Every decision the platform takes (drift streaks, retraining triggers, rollout steps, promotions,
rollbacks) is one line with an `event` and an `event_id`; `read_json_lines` skips a torn last line
left by a crash, so a reader never fails on a log that is still being written.

A writer given `max_bytes` rotates by size: `x.jsonl` is renamed `x.1.jsonl` (the older ones
`x.2.jsonl` ... up to `backups`, the oldest dropped), so every file keeps the `.jsonl` suffix and
a `x*.jsonl` glob still finds them all; `rotated_files` / `read_rotated_json_lines` read them
oldest first.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from mlops_core.errors import InvalidInputError


class LogSettingsError(InvalidInputError):
    """A log's rotation settings are out of range."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class JsonLinesWriter:
    """Append-only JSON lines with a lock, each line flushed as it is written.

    `max_bytes` > 0 rotates the file before a line would take it past that size, keeping
    `backups` older files (at least 1); 0 lets it grow.
    """

    # Not logging's RotatingFileHandler, although it names files the same way: a handler is
    # registered with `logging`, and KServe's start-up (logging.config.dictConfig) closes every
    # registered handler, which silently stopped the log; its emit path also cost ~10x this write.

    def __init__(self, path: str | Path, *, max_bytes: int = 0, backups: int = 0) -> None:
        if max_bytes < 0 or backups < 0:
            raise LogSettingsError(
                f"max_bytes and backups must be >= 0, got {max_bytes}, {backups}"
            )
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 (kept open for the process's life)
        self._max_bytes = max_bytes
        self._backups = max(backups, 1)
        self._size = self.path.stat().st_size
        self._lock = threading.Lock()

    def write(self, doc: dict[str, Any]) -> None:
        line = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with self._lock:
            if self._max_bytes and self._size and self._size + len(line) > self._max_bytes:
                self._rotate()
            self._fh.write(line)
            self._fh.flush()
            self._size += len(line)

    def _rotate(self) -> None:
        """x.jsonl -> x.1.jsonl, x.1.jsonl -> x.2.jsonl, ...; the oldest beyond `backups` goes."""
        self._fh.close()
        for n in range(self._backups - 1, 0, -1):
            older = numbered_file(self.path, n)
            if older.exists():
                os.replace(older, numbered_file(self.path, n + 1))
        os.replace(self.path, numbered_file(self.path, 1))
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def flush(self) -> None:
        with self._lock:
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def numbered_file(path: Path, n: int) -> Path:
    """The n-th rotated file of `x.jsonl`: `x.<n>.jsonl` (keeps the suffix, so `x*.jsonl` globs)."""
    return path.with_name(f"{path.stem}.{n}{path.suffix}")


def rotated_files(path: str | Path) -> list[Path]:
    """The log and its rotated files that exist, oldest first (`x.3.jsonl` ... `x.jsonl`)."""
    p = Path(path)
    pattern = re.compile(rf"^{re.escape(p.stem)}\.(\d+){re.escape(p.suffix)}$")
    numbered = []
    if p.parent.is_dir():
        for f in p.parent.iterdir():
            m = pattern.match(f.name)
            if m:
                numbered.append((int(m.group(1)), f))
    return [f for _, f in sorted(numbered, reverse=True)] + ([p] if p.exists() else [])


def read_rotated_json_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every complete line of a rotating log and its rotated files, oldest first."""
    for f in rotated_files(path):
        yield from read_json_lines(f)


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
        self.writer = JsonLinesWriter(path)  # decisions are few and must all be kept: no rotation
        self.path = self.writer.path

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        # `at` is always the decision's own ISO time; a field of that name would be overwritten.
        doc = {"event": event, "event_id": f"evt-{uuid.uuid4().hex[:12]}"} | fields
        doc["at"] = now_iso()
        self.writer.write(doc)
        return doc

    def read(self) -> list[dict[str, Any]]:
        return list(read_json_lines(self.path))
