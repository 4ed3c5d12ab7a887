"""Building the images for the tests: the scripts' runner, and the timings and sizes the session
prints at its end (a module with its own name, so tests can import it beside other conftests)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "mlops-platform/base:bookworm"
TIMINGS: dict[str, float] = {}
SIZES_MB: dict[str, float] = {}


@dataclass(frozen=True)
class Images:
    components: str
    serving: str
    online_store: str  # Redis from Debian's package (docker/online-store.Dockerfile)


def run_script(label: str, cmd: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    start = time.perf_counter()
    result = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ | env, check=False
    )
    TIMINGS[label] = time.perf_counter() - start
    return result


def must(label: str, cmd: list[str], **env: str) -> None:
    result = run_script(label, cmd, **env)
    if result.returncode != 0:
        pytest.fail(f"{label} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
