"""What every demo stage shares: settings, its own registry, the console and the results table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from mlops_core.registry import ModelRegistry
from mlops_core.settings import Settings
from pipelines.local_run import TrainingParams, run_training_locally


@dataclass
class DemoContext:
    settings: Settings  # registry_uri points at the demo's own registry
    registry: ModelRegistry
    console: Console
    work_dir: Path
    rows: int
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def train(self, **params: Any) -> dict[str, Any]:
        """One local training-pipeline run into the demo registry."""
        return run_training_locally(
            TrainingParams(rows=self.rows, **params),
            registry_uri=self.settings.registry_uri,
            model_name=self.settings.model_name,
            work_dir=self.work_dir,
        )
