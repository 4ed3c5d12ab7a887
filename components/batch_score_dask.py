"""Batch scoring on Dask: each Parquet row group is read and scored on a worker.

The workers run the local path's own per-chunk function (`components.batch_score.score_chunk`:
the serving validator's checks, the compiled model, the same output columns), each with the model
loaded once per worker process from the registry. The step's process keeps a bounded window of
row groups in flight and writes their results in input order through the local path's atomic
Parquet writers, so the scored rows keep the input's order, rejected rows carry the same row
numbers and reasons as locally, and both files appear whole or not at all. Progress is reported
per row group.

The input is a Parquet file or a folder / object-store prefix of Parquet files (in name order:
row numbers count on across files). CSV input is scored by the local path.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from components.batch_score import (
    BatchScoreParams,
    BatchSummary,
    LoadedModel,
    ParquetSink,
    Progress,
    check_paths,
    commit_outputs,
    load_model,
    rejected_schema,
    score_chunk,
    scored_schema,
    write_chunk,
)
from components.dask_compute import ComputeSpec, dask_client
from components.ingest import missing_or_unreachable
from mlops_core.errors import InvalidInputError
from mlops_core.schema import FeatureSchema
from mlops_core.step_timing import timed_step


@dataclass(frozen=True)
class Piece:
    """One row group of one file, and the input row number of its first row."""

    path: str
    row_group: int
    first: int
    rows: int


def parquet_pieces(uri: str) -> tuple[list[Piece], Any]:
    """Every row group of the input (a file, or the Parquet files under a folder / prefix)."""
    fs, root = fsspec.core.url_to_fs(uri)
    try:
        info = fs.info(root)
    except FileNotFoundError as e:
        raise InvalidInputError(missing_or_unreachable(uri, e, "input")) from e
    if info["type"] == "directory":
        files = sorted(p for p in fs.find(root) if p.endswith(".parquet"))
        if not files:
            raise InvalidInputError(f"{uri} is a folder with no .parquet files: nothing to score")
    else:
        files = [root]
    pieces: list[Piece] = []
    first = 0
    for path in files:
        with fs.open(path, "rb") as fh:
            try:
                meta = pq.ParquetFile(fh).metadata
            except pa.ArrowInvalid as e:
                raise InvalidInputError(f"{path} is not a Parquet file: {e}") from e
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            pieces.append(Piece(fs.unstrip_protocol(path), g, first, rows))
            first += rows
    return pieces, fs


_MODELS: dict[tuple[str, str, str], LoadedModel] = {}  # per worker process


def _worker_model(params: BatchScoreParams) -> LoadedModel:
    key = (params.registry_uri, params.model_name, params.version)
    if key not in _MODELS:
        _MODELS[key] = load_model(params)
    return _MODELS[key]


def score_piece(
    piece: Piece, params: BatchScoreParams, run_id: str, schema: FeatureSchema
) -> tuple[pa.Table | None, pa.Table | None, pa.Schema]:
    """On a worker: read one row group (categoricals as dictionaries, as locally) and score it
    with the local path's `score_chunk`, `chunk_rows` at a time."""
    loaded = _worker_model(params)
    with fsspec.open(piece.path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        names = pf.schema_arrow.names
        pf = pq.ParquetFile(
            fh, read_dictionary=[f.name for f in schema.categorical_features if f.name in names]
        )
        batches = list(pf.iter_batches(batch_size=params.chunk_rows, row_groups=[piece.row_group]))
    scored: list[pa.Table] = []
    rejected: list[pa.Table] = []
    first = piece.first
    input_schema = pf.schema_arrow
    for batch in batches:
        input_schema = batch.schema
        good, bad = score_chunk(batch, loaded, params, run_id, first)
        first += batch.num_rows
        scored += [good] if good is not None else []
        rejected += [bad] if bad is not None else []
    return (
        pa.concat_tables(scored, promote_options="permissive") if scored else None,
        pa.concat_tables(rejected) if rejected else None,
        input_schema,
    )


def score_batch_dask(
    params: BatchScoreParams,
    spec: ComputeSpec,
    progress: Progress | None = None,
    client: Any | None = None,
) -> BatchSummary:
    """`components.batch_score.score_batch` with the row groups scored on a Dask cluster: the one
    `spec` starts for this call, or `client`'s (a benchmark's, to time the start apart)."""
    start = time.perf_counter()
    check_paths(params)
    pieces, _ = parquet_pieces(params.input_uri)
    loaded = load_model(params)  # here: the version, schema and a clear error before a cluster
    pinned = replace(params, version=str(loaded.version))  # every worker loads this version
    summary = BatchSummary.for_run(params, loaded)
    if client is not None:
        _score_on(client, pieces, pinned, loaded.schema, summary, progress, spec)
    else:
        with dask_client(spec) as started:
            _score_on(started, pieces, pinned, loaded.schema, summary, progress, spec)
    summary.stop_clock(start)
    return summary


def _score_on(
    client: Any,
    pieces: list[Piece],
    params: BatchScoreParams,
    schema: FeatureSchema,
    summary: BatchSummary,
    progress: Progress | None,
    spec: ComputeSpec,
) -> None:
    total = sum(p.rows for p in pieces)
    out, aside = ParquetSink(params.output_uri), ParquetSink(summary.rejected_uri)
    window = 2 * spec.workers * spec.threads_per_worker()  # row groups in flight at most
    pending: deque[tuple[Piece, Any]] = deque()
    input_schema: pa.Schema | None = None
    try:
        todo = iter(pieces)
        for piece in todo:
            pending.append(
                (piece, client.submit(score_piece, piece, params, summary.run_id, schema))
            )
            if len(pending) >= window:
                input_schema = _collect(pending, out, aside, summary)
                if progress is not None:
                    progress(summary.rows, total)
        while pending:
            input_schema = _collect(pending, out, aside, summary)
            if progress is not None:
                progress(summary.rows, total)
        if input_schema is None or summary.rows == 0:
            raise InvalidInputError(f"{params.input_uri} holds no rows: nothing to score")
        out.finish(scored_schema(input_schema, schema))
        aside.finish(rejected_schema(input_schema))
    except BaseException:
        out.discard()
        aside.discard()
        raise
    commit_outputs(out, aside, summary)


def _collect(
    pending: deque[tuple[Piece, Any]], out: ParquetSink, aside: ParquetSink, summary: BatchSummary
) -> pa.Schema:
    """The oldest row group's result, written in input order."""
    piece, future = pending.popleft()
    scored, rejected, input_schema = future.result()
    write_chunk(summary, out, aside, piece.rows, scored, rejected)
    return input_schema


@timed_step("batch_score")
def batch_score_dask_step(
    *, params: BatchScoreParams, spec: ComputeSpec, summary_path: str
) -> dict[str, Any]:
    """The pipeline step with compute=dask: score, then write the summary JSON."""
    summary = score_batch_dask(params, spec).to_dict()
    with fsspec.open(summary_path, "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary
