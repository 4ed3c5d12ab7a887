"""The two write primitives the registry needs from a store, and which store gives which guarantee.

The registry never edits a file in place. It needs only:

- `put_whole(path, data)`: a reader sees the old file or the new one, never a mix or a half.
- `create_if_absent(path, data)`: of many writers racing for the same path exactly one wins; the
  others learn that they lost (and the file is whole when anyone sees it).

Version numbers are allocated with `create_if_absent` on a claim file, and the champion pointer is
an append-only log of numbered entries, each created with `create_if_absent`: appending entry n+1
after reading entry n is a compare-and-swap on the log.

| store                | put_whole                                | create_if_absent                      |
|----------------------|------------------------------------------|---------------------------------------|
| local (`file://`)    | unique temp file + `os.replace` (atomic  | unique temp file + `os.link` (fails   |
|                      | rename on one POSIX filesystem)          | with EEXIST: atomic on POSIX)         |
| S3 (`s3://`)         | one PutObject (S3 never shows a partial  | PutObject with `If-None-Match: *`     |
|                      | object)                                  | (HTTP 412 when the key exists; AWS S3 |
|                      |                                          | since 2024-08, MinIO)                 |
| memory (`memory://`) | one `pipe_file` under a process lock     | exists-check + write under the same   |
|                      |                                          | lock: one process only (tests)        |

Any other fsspec store can be read, but writing is refused with a message naming these three:
without a create-if-absent primitive two writers could take the same version number.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

from mlops_core.errors import MlopsError

_MEMORY_LOCK = threading.Lock()


class UnsupportedStoreError(MlopsError):
    """The registry URI names a store with no atomic create-if-absent."""


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


class AtomicStore:
    """`put_whole` and `create_if_absent` on one fsspec filesystem (see the table above)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        protocols = _protocols(fs)
        if "file" in protocols or "local" in protocols:
            self.kind = "local"
        elif "s3" in protocols or "s3a" in protocols:
            self.kind = "s3"
        elif "memory" in protocols:
            self.kind = "memory"
        else:
            self.kind = "unsupported"

    def _require_writable(self) -> None:
        if self.kind == "unsupported":
            raise UnsupportedStoreError(
                f"the registry cannot write safely to a {_protocols(self.fs)[0]!r} store: it needs "
                "an atomic create-if-absent, which this project implements for local folders, "
                "s3:// (conditional PutObject) and memory:// (one process). Use one of those."
            )

    # --- reading ---------------------------------------------------------------------------------
    def names(self, folder: str) -> list[str]:
        """The base names directly under `folder` (files and folders); [] when it is absent."""
        self.fs.invalidate_cache(folder)  # s3fs caches listings; a stale one hides a rival's write
        try:
            entries = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in entries)

    def read(self, path: str) -> bytes:
        data: bytes = self.fs.cat_file(path)  # fsspec is untyped
        return data

    # --- writing ---------------------------------------------------------------------------------
    def put_whole(self, path: str, data: bytes) -> None:
        self._require_writable()
        if self.kind == "local":
            tmp = self._write_temp(path, data)
            os.replace(tmp, path)
        elif self.kind == "memory":
            with _MEMORY_LOCK:
                self.fs.pipe_file(path, data)
        else:
            self.fs.pipe_file(path, data)

    def create_if_absent(self, path: str, data: bytes) -> bool:
        """Write `data` at `path` unless something is there; True when this call created it."""
        self._require_writable()
        if self.kind == "local":
            tmp = self._write_temp(path, data)
            try:
                os.link(tmp, path)  # fails with EEXIST if the path exists: atomic on POSIX
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if self.kind == "memory":
            with _MEMORY_LOCK:
                if self.fs.exists(path):
                    return False
                self.fs.pipe_file(path, data)
                return True
        return self._s3_create_if_absent(path, data)

    def _write_temp(self, path: str, data: bytes) -> str:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        # Unique per writer: two writers never share (or delete) each other's temp file.
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    def _s3_create_if_absent(self, path: str, data: bytes) -> bool:
        # s3fs sends PutObject with If-None-Match: * for mode="create" (needs botocore > 1.35.20).
        try:
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:  # s3fs's translation of 412 PreconditionFailed (If-None-Match)
            return False
        except OSError as e:
            # Stores that omit the failed condition's name, and 409 ConditionalRequestConflict
            # (a rival's conditional put to the same key is in flight), also mean "lost".
            cause = e.__cause__ or e.__context__
            code = str(getattr(cause, "response", {}).get("Error", {}).get("Code", ""))
            if code in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                return False
            raise
        return True
