"""`mlops serve` user errors: one red line and a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing


def test_serve_without_a_champion_says_what_to_do(tmp_path: Path) -> None:
    mlops = Path(sys.executable).with_name("mlops")
    result = subprocess.run(
        [str(mlops), "serve", "--model", "churn", "--registry", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no champion" in result.stderr
    assert "Traceback" not in result.stderr


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
