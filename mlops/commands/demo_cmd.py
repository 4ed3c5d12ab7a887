"""`mlops demo`: the whole loop locally, no cluster (what `make demo` runs)."""

from __future__ import annotations

import importlib.util

import typer
from rich.console import Console

from mlops_core.errors import MlopsError
from mlops_core.settings import load_settings


def demo(
    rows: int = typer.Option(20000, "--rows", help="rows of synthetic data per training run"),
    work_dir: str | None = typer.Option(
        None, "--work-dir", help="the demo writes under <work dir>/demo [env MLOPS_WORK_DIR]"
    ),
    features: bool = typer.Option(
        False,
        "--features",
        help="the feature store instead: build it, train from it, serve requests that carry "
        "only a customer id through a real feature server (needs the features extra)",
    ),
) -> None:
    """Train v1 on clean data, retrain on drifted data, reject broken data; summarise. With
    --features: build the feature store, train from it, serve by customer id."""
    from mlops_demo.stages import run_demo

    stages = None
    if features:
        if importlib.util.find_spec("feast") is None:
            raise MlopsError("--features needs Feast: pip install 'mlops-platform[features]'")
        from mlops_demo.feature_serving import FEATURE_STAGES

        stages = FEATURE_STAGES
    run_demo(load_settings(work_dir=work_dir), rows=rows, console=Console(), stages=stages)
