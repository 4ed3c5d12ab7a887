"""`mlops demo`: the whole loop locally, no cluster (what `make demo` runs)."""

from __future__ import annotations

import typer
from rich.console import Console

from mlops_core.settings import load_settings


def demo(
    rows: int = typer.Option(20000, "--rows", help="rows of synthetic data per training run"),
    work_dir: str | None = typer.Option(
        None, "--work-dir", help="the demo writes under <work dir>/demo [env MLOPS_WORK_DIR]"
    ),
) -> None:
    """Train v1 on clean data, retrain on drifted data, reject broken data; summarise."""
    from mlops_demo.stages import run_demo

    run_demo(load_settings(work_dir=work_dir), rows=rows, console=Console())
