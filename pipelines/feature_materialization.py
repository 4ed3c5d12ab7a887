"""The feature materialization pipeline: one step, materialize_features.

Parameters: feature_repo, the feature repository folder (components/feature_store.py: its
feature_store.yaml, registry, Parquet tables and SQLite online store), and end (ISO 8601; empty:
the time the step runs). Each feature view is materialized from where its last materialization
ended (the first time: its source's earliest event) to end, so a recurring run loads only what
arrived since the previous one; the step's output is the JSON summary (views, windows, rows).

`build_materialization_pipeline(image)` makes the pipeline for one component image; the golden IR
YAML is `pipelines/feature_materialization.yaml` (`mlops pipeline compile` writes it with the
others); `run_materialization_locally` runs it with kfp.local. The repository is a folder the step
reads and writes: locally any path; a cluster run needs that folder in the step's pod, which the
platform does not provide yet.
"""

import json
import time
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.kfp_components import (
    MaterializationComponents,
    build_materialization_components,
    default_image,
)
from pipelines.local_run import PipelineRunError, _absolute, local_kfp_run

PIPELINE_NAME = "churn-feature-materialization"
GOLDEN_YAML = Path(__file__).with_name("feature_materialization.yaml")


def build_materialization_pipeline(image: str | None = None) -> Any:
    c: MaterializationComponents = build_materialization_components(image or default_image())

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="materialize_features: each view's new rows into the online store",
    )
    def feature_materialization(feature_repo: str, end: str = "") -> str:
        step = c.materialize_features(feature_repo=feature_repo, end=end)
        return step.outputs["Output"]

    return feature_materialization


def compile_materialization(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    """Write the pipeline's IR YAML."""
    path = Path(path)
    compiler.Compiler().compile(build_materialization_pipeline(image), package_path=str(path))
    return path


def run_materialization_locally(
    *, feature_repo: str, work_dir: str | Path, end: str = "", fork_server: bool = True
) -> dict[str, Any]:
    """Run the pipeline with kfp.local: the step's summary plus `run_dir` and `pipeline_seconds`."""
    pipeline = build_materialization_pipeline()
    start = time.perf_counter()
    with local_kfp_run(work_dir, "materialization-runs", fork_server=fork_server) as (
        run_root,
        log_path,
    ):
        try:
            task = pipeline(feature_repo=_absolute(feature_repo), end=end)
        except RuntimeError as e:
            raise PipelineRunError(
                f"feature materialization failed: {e} (task logs: {log_path})", run_dir=run_root
            ) from e
    summary: dict[str, Any] = json.loads(task.output)
    return summary | {"run_dir": str(run_root), "pipeline_seconds": time.perf_counter() - start}
