"""The batch scoring pipeline: batch_score -> batch_drift.

Parameters: registry_uri, model_name, version ("champion", "latest" or a number); input_uri, a CSV
or Parquet file on any fsspec path (compute=dask: also a folder of Parquet files); chunk_rows (memory bound per chunk), unknown_category
("reject" | "unseen"), threshold (the label's cut), and the compute choice
(pipelines/params.py ComputeParams: local, or dask with its workers' count, memory and CPU). The scores and the rejected rows are the
batch_score step's Parquet artifacts (in the pipeline root: S3 on a cluster), each row stamped with
the model version and the KFP run id; batch_drift compares the scored batch with the version's
training reference (the drift monitor's statistics, predictions included).

`build_batch_scoring_pipeline(image)` makes the pipeline for one component image (with
`object_store`, every step gets that store's endpoint and credentials, as training's steps do, so
an s3:// registry and input are reachable on the cluster); the golden IR YAML is
`pipelines/batch_scoring.yaml`, the cluster form (`mlops pipeline compile` writes it with
training.yaml); `run_batch_scoring_locally` runs the local form with kfp.local.
"""

import json
import time
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.dask_kubecluster import IMAGE_ENV as DASK_IMAGE_ENV
from components.dask_kubecluster import STORE_SECRET_ENV as DASK_STORE_SECRET_ENV
from components.kfp_components import BatchScoringComponents, build_batch_components, default_image
from mlops_core.settings import (
    DEFAULT_BATCH_CHUNK_ROWS,
    DEFAULT_DECISION_THRESHOLD,
    DEFAULT_MODEL_NAME,
)
from pipelines.local_run import PipelineRunError, _absolute, local_kfp_run
from pipelines.params import ComputeParams, default
from pipelines.training import ObjectStore

PIPELINE_NAME = "churn-batch-scoring"
GOLDEN_YAML = Path(__file__).with_name("batch_scoring.yaml")


def build_batch_scoring_pipeline(
    image: str | None = None, object_store: ObjectStore | None = None
) -> Any:
    c: BatchScoringComponents = build_batch_components(image or default_image())

    @dsl.pipeline(name=PIPELINE_NAME, description="batch_score -> batch_drift")
    def batch_scoring(
        registry_uri: str,
        input_uri: str,
        model_name: str = DEFAULT_MODEL_NAME,
        version: str = "champion",
        chunk_rows: int = DEFAULT_BATCH_CHUNK_ROWS,
        unknown_category: str = "reject",
        threshold: float = DEFAULT_DECISION_THRESHOLD,
        compute: str = default(ComputeParams, "compute"),
        dask_workers: int = default(ComputeParams, "dask_workers"),
        dask_worker_memory: str = default(ComputeParams, "dask_worker_memory"),
        dask_worker_cpu: float = default(ComputeParams, "dask_worker_cpu"),
    ) -> str:
        score = c.batch_score(
            registry_uri=registry_uri,
            model_name=model_name,
            version=version,
            input_uri=input_uri,
            chunk_rows=chunk_rows,
            unknown_category=unknown_category,
            threshold=threshold,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            compute=compute,
            dask_workers=dask_workers,
            dask_worker_memory=dask_worker_memory,
            dask_worker_cpu=dask_worker_cpu,
        )
        score.set_env_variable(DASK_IMAGE_ENV, c.image)  # compute=dask: the workers' image
        drift = c.batch_drift(
            scores=score.outputs["scores"],
            registry_uri=registry_uri,
            model_name=model_name,
            version=version,
        )
        if object_store is not None:
            for task in (score, drift):
                object_store.attach(task)
            score.set_env_variable(DASK_STORE_SECRET_ENV, object_store.dask_secret)
        return score.outputs["Output"]

    return batch_scoring


def compile_batch_scoring(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    path = Path(path)
    """Write the cluster form's IR YAML (the object store `make deploy` installs)."""
    pipeline = build_batch_scoring_pipeline(image, object_store=ObjectStore())
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return path


def run_batch_scoring_locally(
    *,
    registry_uri: str,
    input_uri: str,
    work_dir: str | Path,
    model_name: str = DEFAULT_MODEL_NAME,
    version: str = "champion",
    chunk_rows: int = DEFAULT_BATCH_CHUNK_ROWS,
    fork_server: bool = True,
    compute: ComputeParams | None = None,
) -> dict[str, Any]:
    """Run the pipeline with kfp.local: the summary plus `run_dir`, `scores`, `rejected`, `drift`."""
    pipeline = build_batch_scoring_pipeline()
    start = time.perf_counter()
    with local_kfp_run(work_dir, "batch-runs", fork_server=fork_server) as (run_root, log_path):
        try:
            task = pipeline(
                registry_uri=_absolute(registry_uri),
                input_uri=_absolute(input_uri),
                model_name=model_name,
                version=version,
                chunk_rows=chunk_rows,
                **(compute or ComputeParams()).__dict__,
            )
        except RuntimeError as e:
            raise PipelineRunError(
                f"batch scoring failed: {e} (task logs: {log_path})", run_dir=run_root
            ) from e
    summary = json.loads(task.output)
    drift = sorted(run_root.glob("*/batch-drift/report"))
    return summary | {
        "run_dir": str(run_root),
        "drift": json.loads(drift[-1].read_text()) if drift else {},
        "pipeline_seconds": time.perf_counter() - start,
    }
