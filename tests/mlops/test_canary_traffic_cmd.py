"""`mlops canary traffic` as a user runs it: the real CLI process sending a CSV's rows to a real
`mlops serve`, counting the answers by version and status."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.harness import MODEL, RunningServer

pytestmark = pytest.mark.slow  # real CLI processes

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_traffic_sends_the_csvs_rows_until_its_time_is_up(
    server: RunningServer, tmp_path: Path
) -> None:
    assert (
        mlops("data", "sample", "churn", "--rows", "200", "-o", "c.csv", cwd=tmp_path).returncode
        == 0
    )
    r = mlops(
        "canary", "traffic", server.url, "--data", "c.csv", "--drop", "churned",
        "--model", MODEL, "--seconds", "3", "--host-header", "churn-mlops.example.com",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    first, last = r.stdout.strip().splitlines()
    assert first.startswith(f"sending {MODEL} requests to {server.url}/v1/models/{MODEL}:predict")
    sent = re.fullmatch(r"sent (\d+) requests: v(\S+) 200: (\d+); transport errors: 0", last)
    assert sent, last
    assert int(sent.group(1)) == int(sent.group(3)) > 10  # every request answered 200


def test_traffic_mistakes_are_one_line(server: RunningServer, tmp_path: Path) -> None:
    assert mlops("data", "sample", "cars", "-o", "cars.csv", cwd=tmp_path).returncode == 0
    r = mlops(
        "canary", "traffic", server.url, "--data", "cars.csv", "--drop", "price", cwd=tmp_path
    )
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: --drop ['price']: not columns of cars.csv")
