"""Messages that named the wrong problem (issue 14, low), as the real CLI process prints them.

- a registry path that does not exist is named as such, not read as an empty registry ("no
  champion yet", "no earlier champion", "known versions: []", an empty table);
- a data source on a closed port "could not connect", rather than "does not exist" (fsspec's
  HTTP filesystem reports both as FileNotFoundError); a real 404 still "does not exist".
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.ingest import IngestError, read_table
from mlops_control.traffic.model_server_process import free_port

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow  # one CLI process each
@pytest.mark.parametrize(
    "command",
    [["list"], ["show", "3"], ["promote", "1"], ["rollback"]],
    ids=" ".join,
)
def test_a_missing_registry_path_is_named(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-registry"
    r = mlops("registry", *command, "--registry", str(missing), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"the registry {missing} does not exist" in r.stderr
    for wrong in ("no champion", "no earlier champion", "known versions", "Traceback"):
        assert wrong not in r.stderr
    assert not missing.exists()  # reading never creates it


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving an empty folder (every file is a 404)."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_closed_port_is_not_a_missing_file(http_folder: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/churn.csv"  # bound, then released: nobody listens
    with pytest.raises(IngestError, match="could not connect") as caught:
        read_table(closed)
    assert "does not exist" not in str(caught.value) and closed in str(caught.value)
    with pytest.raises(IngestError, match="does not exist"):
        read_table(f"{http_folder}/churn.csv")  # the server answered 404: really missing


@pytest.mark.slow
def test_batch_score_names_a_closed_port(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/in.csv"
    r = mlops(
        "batch", "score", "--input", closed, "--output", str(tmp_path / "out.parquet"),
        "--registry", str(tmp_path / "registry"), cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"could not connect to read {closed}" in r.stderr, r.stderr
    assert "does not exist" not in r.stderr
