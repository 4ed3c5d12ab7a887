"""`mlops batch score`: a registered model over a CSV/Parquet file (any fsspec path), Parquet out."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_BATCH_CHUNK_ROWS, load_settings
from pipelines.params import ComputeParams, default, help_for

app = typer.Typer(help="Batch scoring from the registry.", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def score(
    input: str = typer.Option(..., "--input", help="CSV or Parquet file (local, http(s), s3://)"),
    output: str = typer.Option(..., "--output", help="Parquet file to write the scores to"),
    model: str | None = typer.Option(None, "--model", help="model name [env MLOPS_MODEL_NAME]"),
    version: str = typer.Option("champion", "--version", help="a number, champion or latest"),
    registry: str | None = typer.Option(
        None, "--registry", help="registry URI [env MLOPS_REGISTRY_URI]"
    ),
    rejected: str = typer.Option(
        "", "--rejected", help="Parquet file for rejected rows [default: <output>.rejected.parquet]"
    ),
    chunk_rows: int = typer.Option(
        DEFAULT_BATCH_CHUNK_ROWS, "--chunk-rows", help="rows per chunk (bounds memory)"
    ),
    unknown_category: str | None = typer.Option(
        None, "--unknown-category", help="reject | unseen [env MLOPS_UNKNOWN_CATEGORY]"
    ),
    threads: int = typer.Option(0, "--threads", help="model threads (0: every core)"),
    run_id: str = typer.Option("", "--run-id", help="id stamped on every row [default: new]"),
    compute: str = typer.Option(
        default(ComputeParams, "compute"), "--compute", help=help_for(ComputeParams, "compute")
    ),
    dask_workers: int = typer.Option(
        default(ComputeParams, "dask_workers"),
        "--dask-workers",
        help=help_for(ComputeParams, "dask_workers"),
    ),
    dask_worker_memory: str = typer.Option(
        default(ComputeParams, "dask_worker_memory"),
        "--dask-worker-memory",
        help=help_for(ComputeParams, "dask_worker_memory"),
    ),
    dask_worker_cpu: float = typer.Option(
        default(ComputeParams, "dask_worker_cpu"),
        "--dask-worker-cpu",
        help=help_for(ComputeParams, "dask_worker_cpu"),
    ),
) -> None:
    """Score a file with a registered version: summary on stdout, progress on stderr."""
    from components.batch_score import BatchScoreParams, score_batch  # pandas/pyarrow: here
    from components.batch_score_dask import score_batch_dask

    try:  # a bad choice is one line, before any work
        spec = ComputeParams(
            compute=compute,
            dask_workers=dask_workers,
            dask_worker_memory=dask_worker_memory,
            dask_worker_cpu=dask_worker_cpu,
        ).compute_spec()
    except MlopsError as e:
        raise typer.BadParameter(str(e)) from e

    s = load_settings(registry_uri=registry, model_name=model, unknown_category=unknown_category)
    params = BatchScoreParams(
        registry_uri=s.registry_uri,
        model_name=s.model_name,
        version=version,
        input_uri=input,
        output_uri=output,
        rejected_uri=rejected,
        run_id=run_id,
        chunk_rows=chunk_rows,
        threshold=s.decision_threshold,
        unknown_category=s.unknown_category,
        threads=threads,
    )
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("rows", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        if spec.is_dask:
            summary = score_batch_dask(params, spec, progress)
        else:
            summary = score_batch(params, progress)
    table = Table(title=f"{summary.model_name} v{summary.model_version}, run {summary.run_id}")
    for col in ("rows", "scored", "rejected", "seconds", "rows/s", "peak MB", "path"):
        table.add_column(col)
    table.add_row(
        f"{summary.rows:,}",
        f"{summary.scored:,}",
        f"{summary.rejected:,}",
        f"{summary.seconds:.2f}",
        f"{summary.rows_per_s:,.0f}",
        f"{summary.peak_rss_mb:,.0f}",
        summary.inference_path,
    )
    Console().print(table)
    print(f"scores: {summary.output_uri}")
    print(f"rejected: {summary.rejected_uri} ({summary.rejected} rows)")
    for reason, n in sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {n:>8,}  {reason}")
