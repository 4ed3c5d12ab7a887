"""After `make demo`, the user is told how to reach the `mlops` command and serve the demo's
models, and `make serve` takes the registry the demo names (issue 24, items 3 and 4)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from mlops_core.registry import ModelRegistry
from mlops_core.settings import Settings
from mlops_demo.context import DemoContext
from mlops_demo.stages import next_steps

REPO = Path(__file__).resolve().parents[2]


def test_closing_lines_name_the_venv_and_the_serve_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    registry = tmp_path / ".mlops" / "demo" / "registry"
    ctx = DemoContext(
        settings=Settings(registry_uri=str(registry)),
        registry=ModelRegistry(str(registry)),
        console=Console(),
        work_dir=tmp_path / ".mlops" / "demo",
        rows=100,
    )
    text = "\n".join(next_steps(ctx))
    assert "source .venv/bin/activate" in text
    assert ".venv/bin/mlops registry list --registry .mlops/demo/registry" in text
    assert "make serve REGISTRY=.mlops/demo/registry" in text


def test_make_serve_passes_registry_and_model() -> None:
    out = subprocess.run(
        [
            "make",
            "-n",
            "serve",
            "REGISTRY=.mlops/demo/registry",
            "MODEL=churn",
            "INSTALLED=/dev/null",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ".venv/bin/mlops serve --registry .mlops/demo/registry --model churn" in out
