"""The prediction log rotates by size (issue 14: 8.2 MB after 62k requests, never rotated).

In a real `mlops serve` process with a small limit: the files stay within the limit and the
backup count, and what reads the log still finds a request whose line was rotated away from
`predictions.jsonl` (`mlops audit`, as a real CLI process), while its label still joins and the
drift monitor still counts its rows (both keep their state in memory, not in the log).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops_core.jsonl_log import (
    JsonLinesWriter,
    read_json_lines,
    read_rotated_json_lines,
    rotated_files,
)
from serving.v1_instances import v1_instances
from tests.serving.harness import (
    MODEL,
    RegisteredModels,
    RunningServer,
    scoring_frame,
    start_server,
    stop_server,
)

MAX_BYTES, BACKUPS = 5120, 2  # a line is ~190 bytes
PENDING_CAP = 100  # the label store's cap, lowered by its setting
MLOPS = str(Path(sys.executable).with_name("mlops"))


def test_writer_rotates_by_size_and_keeps_the_newest_lines(tmp_path: Path) -> None:
    log = tmp_path / "predictions.jsonl"
    writer = JsonLinesWriter(log, max_bytes=1000, backups=3)
    for i in range(500):
        writer.write({"i": i, "pad": "x" * 40})
    writer.close()
    files = rotated_files(log)
    assert [f.name for f in files] == [
        "predictions.3.jsonl",
        "predictions.2.jsonl",
        "predictions.1.jsonl",
        "predictions.jsonl",
    ]
    assert all(f.stat().st_size <= 1000 for f in files)
    seen = [doc["i"] for doc in read_rotated_json_lines(log)]
    assert seen == list(range(seen[0], 500))  # oldest first, nothing lost inside the kept files
    assert len(seen) > 3 * (1000 // 60)
    # 0 bytes: never rotates (the decision log's setting).
    plain = JsonLinesWriter(tmp_path / "decisions.jsonl")
    for i in range(500):
        plain.write({"i": i, "pad": "x" * 40})
    plain.close()
    assert rotated_files(tmp_path / "decisions.jsonl") == [tmp_path / "decisions.jsonl"]
    assert len(list(read_json_lines(tmp_path / "decisions.jsonl"))) == 500


@pytest.fixture(scope="module")
def rotating(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    audit = tmp_path_factory.mktemp("audit")
    env = {
        "MLOPS_AUDIT_DIR": str(audit),
        "MLOPS_PREDICTION_LOG_MAX_BYTES": str(MAX_BYTES),
        "MLOPS_PREDICTION_LOG_BACKUPS": str(BACKUPS),
        "MLOPS_MONITOR_MIN_ROWS": "10",
        "MLOPS_MONITOR_PANE_ROWS": "1000",
        "MLOPS_FEEDBACK_MAX_PENDING": str(PENDING_CAP),
    }
    log = tmp_path_factory.mktemp("logs") / "server.log"
    running = start_server(
        ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"], env, log
    )
    yield running, audit
    assert stop_server(running) == 0, log.read_text()


def test_the_log_rotates_and_readers_still_find_old_requests(
    rotating: tuple[RunningServer, Path], registered: RegisteredModels
) -> None:
    server, audit = rotating
    instances = v1_instances(scoring_frame(60, seed=41))
    ids = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for row in instances:
            r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": [row]})
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
    log = audit / "predictions.jsonl"
    files = rotated_files(log)
    assert [f.name for f in files][-2:] == ["predictions.1.jsonl", "predictions.jsonl"]
    assert all(f.stat().st_size <= MAX_BYTES for f in files)
    logged = [doc["request_id"] for doc in read_rotated_json_lines(log)]
    assert logged == ids[-len(logged) :]  # in order, none lost inside the kept files
    first = ids[0]
    assert first not in {doc["request_id"] for doc in read_json_lines(log)}  # rotated away

    # `mlops audit` (the log's reader) finds it in the rotated file.
    r = subprocess.run(
        [MLOPS, "audit", first, "--json", "--audit-dir", str(audit), "--registry",
         registered.registry_uri],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert first in r.stdout and "predictions.1.jsonl" in r.stdout

    # Its label still joins, and the drift monitor counted every row.
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}/feedback", json={"request_id": first, "label": 1}
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    drift = httpx.get(f"{server.url}/v1/models/{MODEL}/drift").json()
    assert drift["window_rows"]["1"] == len(ids)

    # More traffic: the oldest file is dropped, never more than BACKUPS + 1 files.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for row in instances:
            assert client.post(f"/v1/models/{MODEL}:predict", json={"instances": [row]}).is_success
    files = rotated_files(log)
    assert len(files) == BACKUPS + 1 and all(f.stat().st_size <= MAX_BYTES for f in files)
    assert sorted(p.name for p in audit.glob("predictions*")) == sorted(f.name for f in files)
    assert "observer" not in server.log.read_text()  # no write failed along the way
    # 119 rows wait for a label; the store keeps the newest PENDING_CAP.
    quality = httpx.get(f"{server.url}/v1/models/{MODEL}/quality").json()
    assert quality["pending"] == PENDING_CAP
