"""Schemathesis against the server's own OpenAPI document: no generated request may get a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.harness import MODEL, RunningServer

pytestmark = pytest.mark.slow  # kfp.local runs, model servers or fuzzing


def test_schemathesis_finds_no_server_errors(server: RunningServer, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    # Aim the path parameter at the served model so generated bodies reach the predictor, not 404.
    config.write_text(f'[parameters]\n"path.model_name" = "{MODEL}"\n')
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--request-timeout",
            "20",
            # Model load/unload is KServe's admin API: unloading the only model is meant to leave
            # the server unready (503), which is not what this test is about.
            "--exclude-path-regex",
            "/repository/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = result.stdout + result.stderr
    assert "Server error" not in report, report[-6000:]
    assert result.returncode == 0, report[-6000:]
    assert "No operations" not in report
