"""The batch scoring pipeline: batch_score -> batch_drift.

Parameters: registry_uri, model_name, version ("champion", "latest" or a number); input_uri, a CSV
or Parquet file on any fsspec path; chunk_rows (memory bound per chunk), unknown_category
("reject" | "unseen"), threshold (the label's cut). The scores and the rejected rows are the
batch_score step's Parquet artifacts (in the pipeline root: S3 on a cluster), each row stamped with
the model version and the KFP run id; batch_drift compares the scored batch with the version's
training reference (the drift monitor's statistics, predictions included).

`build_batch_scoring_pipeline(image)` makes the pipeline for one component image; the golden IR YAML
is `pipelines/batch_scoring.yaml` (`mlops pipeline compile` writes it with training.yaml);
`run_batch_scoring_locally` runs it with kfp.local.
"""

import contextlib
import json
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.kfp_components import BatchScoringComponents, build_batch_components, default_image
from mlops_core.settings import DEFAULT_BATCH_CHUNK_ROWS, DEFAULT_MODEL_NAME
from pipelines.local_run import PipelineRunError, _absolute
from pipelines.task_forkserver import task_fork_server

PIPELINE_NAME = "churn-batch-scoring"
GOLDEN_YAML = Path(__file__).with_name("batch_scoring.yaml")


def build_batch_scoring_pipeline(image: str | None = None) -> Any:
    c: BatchScoringComponents = build_batch_components(image or default_image())

    @dsl.pipeline(name=PIPELINE_NAME, description="batch_score -> batch_drift")
    def batch_scoring(
        registry_uri: str,
        input_uri: str,
        model_name: str = DEFAULT_MODEL_NAME,
        version: str = "champion",
        chunk_rows: int = DEFAULT_BATCH_CHUNK_ROWS,
        unknown_category: str = "reject",
        threshold: float = 0.5,
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
        )
        c.batch_drift(
            scores=score.outputs["scores"],
            registry_uri=registry_uri,
            model_name=model_name,
            version=version,
        )
        return score.outputs["Output"]

    return batch_scoring


def compile_batch_scoring(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    path = Path(path)
    compiler.Compiler().compile(build_batch_scoring_pipeline(image), package_path=str(path))
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
) -> dict[str, Any]:
    """Run the pipeline with kfp.local: the summary plus `run_dir`, `scores`, `rejected`, `drift`."""
    import kfp.local

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    run_root = Path(work_dir).resolve() / "batch-runs" / stamp
    run_root.mkdir(parents=True, exist_ok=True)
    log_path = run_root / "tasks.log"
    kfp.local.init(
        runner=kfp.local.SubprocessRunner(use_venv=False),
        pipeline_root=str(run_root),
        raise_on_error=True,
    )
    pipeline = build_batch_scoring_pipeline()
    start = time.perf_counter()
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(log),
        warnings.catch_warnings(),
        task_fork_server(fork_server),
    ):
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        try:
            task = pipeline(
                registry_uri=_absolute(registry_uri),
                input_uri=_absolute(input_uri),
                model_name=model_name,
                version=version,
                chunk_rows=chunk_rows,
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
