"""An output file that appears whole or not at all: written under a temporary name, committed at
the end.

On a local disk the temporary file sits in the target's own folder (so the final rename is one
`os.replace` on the same filesystem, atomic: a reader sees the old file or the new one, never a
half). On an object store there is no rename: the file is written to a local temporary file and
sent with one `put` at commit, so a failed run uploads nothing. A run killed with SIGKILL leaves at
most a hidden `.<name>.<id>.partial` file next to the target; the previous output is untouched.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import uuid
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from mlops_core.errors import InvalidInputError

PARTIAL_SUFFIX = ".partial"


class OutputError(InvalidInputError):
    """An output cannot be written where the user asked (no such folder, no permission)."""


def same_path(a: str, b: str) -> bool:
    """Whether two fsspec paths name the same file (local paths after resolving links)."""
    return _canonical(a) == _canonical(b)


def _canonical(uri: str) -> str:
    fs, path = fsspec.core.url_to_fs(uri)
    if isinstance(fs, LocalFileSystem):
        return "file://" + os.path.realpath(path)
    return fs.unstrip_protocol(path).rstrip("/")


def check_writable(uri: str, what: str) -> None:
    """Refuse, before any work, a local output whose folder is missing or not writable, or that
    is a folder itself. (An object store answers only at the upload: its error is one line too.)"""
    fs, path = fsspec.core.url_to_fs(uri)
    if not isinstance(fs, LocalFileSystem):
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise OutputError(f"{what} {uri} is a folder; name a file such as {uri}/scores.parquet")
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {what} {uri}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {what} {uri}: no permission to write in {folder}")


class AtomicOutput:
    """`open()` the temporary file, write it, then `commit()` (or `discard()` on failure)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.path = fsspec.core.url_to_fs(uri)
        self.local = isinstance(self.fs, LocalFileSystem)
        name = f".{posixpath.basename(self.path)}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        if self.local:
            self.partial = os.path.join(os.path.dirname(os.path.abspath(self.path)), name)
        else:
            self.partial = os.path.join(tempfile.gettempdir(), name)
        self._fh: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        try:
            self._fh = open(self.partial, "wb")  # noqa: SIM115 - closed by commit/discard
        except OSError as e:
            raise OutputError(f"cannot write {self.uri}: {e.strerror or e}") from e
        return self._fh

    def commit(self) -> None:
        """Put the finished file in place of the target (the old one stays until this moment)."""
        if self._fh is not None:
            self._fh.close()
        try:
            if self.local:
                os.replace(self.partial, self.path)
            else:
                self.fs.put_file(self.partial, self.path)
        except OSError as e:
            raise OutputError(f"cannot write {self.uri}: {e.strerror or e}") from e
        finally:
            self._remove_partial()

    def discard(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._remove_partial()

    def _remove_partial(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.partial)
