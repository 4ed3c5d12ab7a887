"""Every `mlops` command docs/experiments.md shows exists with the options it is shown with
(the outputs shown come from a real run: tests/mlops_control/experiments/test_experiment_local.py
asserts the same lines)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.upstream import ROOT

DOC = ROOT / "docs" / "experiments.md"
pytestmark = pytest.mark.slow  # one `mlops --help` process per command


def shown_commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ mlops ") and "make" not in line:
                out.append(shlex.split(line[2:].rstrip(" &")))
    return out


def test_the_page_shows_the_experiment_commands() -> None:
    shown = {" ".join(c[:3]) for c in shown_commands()}
    assert {"mlops experiment start", "mlops experiment run", "mlops experiment status"} <= shown


@pytest.mark.parametrize("command", shown_commands(), ids=lambda c: " ".join(c[:3]))
def test_each_shown_command_takes_its_options(command: list[str]) -> None:
    words = [w for w in command[1:] if not w.startswith("-")][:2]
    exe = Path(sys.executable).with_name("mlops")
    r = subprocess.run(
        [str(exe), *words, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, r.stderr
    for option in (w for w in command if w.startswith("--")):
        assert option in r.stdout, f"{' '.join(command)}: {option} is not an option"
