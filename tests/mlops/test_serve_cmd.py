"""`mlops serve` user errors: one red line and a non-zero exit, no traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.harness import MODEL, RunningServer

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    mlops = Path(sys.executable).with_name("mlops")
    return subprocess.run([str(mlops), "serve", *args], capture_output=True, text=True, timeout=120)


def test_serve_without_a_champion_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _serve("--model", "churn", "--registry", str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "no champion" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_from_a_missing_registry_says_it_is_missing(tmp_path: Path) -> None:
    # The probe: a mistyped registry path was reported as "no champion yet".
    result = _serve("--model", "churn", "--registry", str(tmp_path / "typo"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "no champion" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, however wide the terminal


def test_serve_from_a_folder_that_is_not_a_version(tmp_path: Path) -> None:
    mlops = Path(sys.executable).with_name("mlops")
    result = subprocess.run(
        [str(mlops), "serve", "--model-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "model.skops" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_an_invalid_policy_says_which_setting(tmp_path: Path) -> None:
    mlops = Path(sys.executable).with_name("mlops")
    result = subprocess.run(
        [str(mlops), "serve", "--model-dir", str(tmp_path), "--unknown-category", "maybe"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown_category" in result.stderr and "maybe" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_logs_the_start_up_line_the_docs_show(server: RunningServer) -> None:
    # Issue 24, item 11: the start-up line (what is served, where, whether writes need a token)
    # was logged before any handler was configured, so it never appeared.
    text = server.log.read_text()
    pattern = rf"serving {MODEL} version 1 from \S+ on 127\.0\.0\.1:\d+ \(write endpoints are open"
    assert re.search(pattern, text), text[:2000]
