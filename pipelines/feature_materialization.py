"""The feature materialization pipeline: one step, materialize_features.

Parameters: feature_repo, the feature repository folder (components/feature_store.py: its
feature_store.yaml, registry, Parquet tables and SQLite online store), and end (ISO 8601; empty:
the time the step runs). Each feature view is materialized from where its last materialization
ended (the first time: its source's earliest event) to end, so a recurring run loads only what
arrived since the previous one; the step's output is the JSON summary (views, windows, rows).

`build_materialization_pipeline(image)` makes the pipeline for one component image;
`run_materialization_locally` runs it with kfp.local on a repository folder. The golden IR YAML,
`pipelines/feature_materialization.yaml` (`mlops pipeline compile` writes it with the others), is
the cluster form: its `feature_repo` defaults to the repository `make deploy` keeps in the object
store, and its step gets the store's endpoint and credentials (as training's steps do) and the
online store `make deploy` runs (Redis), so the YAML runs unedited on that cluster, once or as a
recurring run (`mlops features submit`, `mlops features schedule`).
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.kfp_components import (
    MaterializationComponents,
    build_materialization_components,
    default_image,
)
from mlops_core.settings import DEFAULT_CLUSTER_FEATURE_REPO, DEFAULT_CLUSTER_ONLINE_STORE
from pipelines.local_run import PipelineRunError, _absolute, local_kfp_run
from pipelines.training import ObjectStore

PIPELINE_NAME = "churn-feature-materialization"
GOLDEN_YAML = Path(__file__).with_name("feature_materialization.yaml")


@dataclass(frozen=True)
class ClusterForm:
    """Where a cluster run finds the repository and the online store (`make deploy`'s)."""

    object_store: ObjectStore = field(default_factory=ObjectStore)
    feature_repo: str = DEFAULT_CLUSTER_FEATURE_REPO
    online_store: str = DEFAULT_CLUSTER_ONLINE_STORE


def build_materialization_pipeline(
    image: str | None = None, cluster: ClusterForm | None = None
) -> Any:
    """The pipeline for one component image; with `cluster`, its cluster form (module doc)."""
    c: MaterializationComponents = build_materialization_components(image or default_image())

    def feature_materialization(feature_repo: str, end: str = "") -> str:
        step = c.materialize_features(feature_repo=feature_repo, end=end)
        step.set_caching_options(False)  # each run reads what arrived since the last one
        if cluster is not None:
            cluster.object_store.attach(step)
            step.set_env_variable("MLOPS_FEATURE_ONLINE_STORE", cluster.online_store)
        return step.outputs["Output"]

    if cluster is not None:  # the repository's default: the one the cluster's feature server reads
        feature_materialization.__defaults__ = (cluster.feature_repo, "")
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="materialize_features: each view's new rows into the online store",
    )(feature_materialization)


def compile_materialization(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    """Write the pipeline's IR YAML, in its cluster form."""
    path = Path(path)
    pipeline = build_materialization_pipeline(image, cluster=ClusterForm())
    compiler.Compiler().compile(pipeline, package_path=str(path))
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
