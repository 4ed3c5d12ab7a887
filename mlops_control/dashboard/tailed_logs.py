"""Read JSON-lines logs incrementally: each refresh parses only the bytes appended since the last.

A dashboard polls every few seconds; re-reading a day of logs each time would not stay fast. A
file that shrank or was replaced (rotation: `x.jsonl` renamed `x.1.jsonl`) is read again from its
start, keyed by inode, so a rotated file's lines are not read twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

HEAD_BYTES = 64


@dataclass
class _Cursor:
    offset: int
    head: bytes  # the file's first bytes when first read (up to HEAD_BYTES)


class TailedLogs:
    """New complete lines of every file matched by `patterns` under `dirs`, oldest file first."""

    def __init__(self, dirs: Iterable[str | Path], patterns: Iterable[str]) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.patterns = list(patterns)
        self._cursors: dict[int, _Cursor] = {}  # by inode: survives a rename on rotation

    def _files(self) -> list[Path]:
        found: dict[Path, float] = {}
        for d in self.dirs:
            if not d.is_dir():
                continue
            for pattern in self.patterns:
                for p in d.rglob(pattern):
                    try:
                        found[p] = p.stat().st_mtime
                    except FileNotFoundError:
                        continue
        return sorted(found, key=lambda p: (found[p], str(p)))

    def new_lines(self) -> Iterator[dict[str, Any]]:
        for path in self._files():
            try:
                fh = open(path, "rb")  # noqa: SIM115 (closed below; the file may vanish first)
            except FileNotFoundError:
                continue
            with fh:
                st = os.fstat(fh.fileno())
                cursor = self._cursors.get(st.st_ino)
                if cursor is not None and cursor.head != fh.read(len(cursor.head)):
                    cursor = None  # another file on a reused inode
                if cursor is None or st.st_size < cursor.offset:
                    cursor = self._cursors[st.st_ino] = _Cursor(0, b"")
                if st.st_size == cursor.offset:
                    continue
                fh.seek(cursor.offset)
                data = fh.read(st.st_size - cursor.offset)
            end = data.rfind(b"\n") + 1  # a torn last line waits for its newline
            if cursor.offset == 0:
                cursor.head = data[: min(end, HEAD_BYTES)]
            cursor.offset += end
            for line in data[:end].splitlines():
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(doc, dict):
                    yield doc
