"""The project's wheel (what hack/wheelhouse.sh puts in the images) carries the dashboard's page and
the browser bundle `make dashboard-assets` built, and none of the npm sources or packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def test_the_wheel_carries_the_built_bundle(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         str(ROOT), "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("mlops_platform-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for part in ("page.html", "static/dashboard.js", "static/dashboard.css",
                 "static/uplot.LICENSE.txt"):  # fmt: skip
        assert f"mlops_control/dashboard/{part}" in names, part
    assert not [n for n in names if "frontend" in n or "node_modules" in n]
