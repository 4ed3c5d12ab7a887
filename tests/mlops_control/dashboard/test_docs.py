"""docs/dashboard.md's `mlops` commands, run as written: each prints what the page says it does."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "dashboard.md"


def console_blocks() -> list[tuple[str, list[str]]]:
    """(command, the lines shown after it) of every ```console block."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        lines = block.rstrip("\n").splitlines()
        found.append((lines[0].removeprefix("$ "), lines[1:]))
    return found


def first_line_of(args: list[str], cwd: Path) -> str:
    mlops = str(Path(sys.executable).with_name("mlops"))
    proc = subprocess.Popen([mlops, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        return proc.stdout.readline().rstrip("\n")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_mlops_dashboard_command_prints_what_the_doc_shows(tmp_path: Path) -> None:
    commands = [(c, out) for c, out in console_blocks() if c.startswith("mlops dashboard")]
    assert len(commands) == 2
    for command, shown in commands:
        assert first_line_of(shlex.split(command)[1:], tmp_path) == shown[0], command


def test_the_grafana_command_writes_the_files_the_doc_lists(tmp_path: Path) -> None:
    (shown,) = [out for c, out in console_blocks() if c == "make grafana-dashboards"]
    recipe, *wrote = shown
    args = shlex.split(recipe)[1:]  # `.venv/bin/mlops dashboard grafana --out DIR`
    out = tmp_path / "grafana"
    done = subprocess.run(
        [str(Path(sys.executable).with_name("mlops")), *args[:-1], str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [line.replace(str(out), args[-1]) for line in done.stdout.splitlines()] == wrote
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(w.split()[-1]).name for w in wrote)
