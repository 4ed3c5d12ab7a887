"""Batch scoring: a registered model version over a CSV or Parquet file, Parquet out, in chunks.

Input and outputs are fsspec paths (local, http(s), s3). The input is streamed `chunk_rows` rows at
a time (Parquet record batches, or CSV blocks), so memory stays bounded by a few chunks (one per
core being scored, one being read, two waiting for the writer) whatever the file's size. Every
chunk passes the serving validator's rules (`mlops_core.row_checks`): good rows are scored with
the fast inference path (`components.fast_inference`, the Pipeline as fallback) and written with
the input's columns plus `probability`, `label`, `model_name`, `model_version` and `run_id`; bad
rows go to a second Parquet file with their row number and reasons. The summary (rows, rejected,
seconds, rows/s, peak memory) is returned and written as JSON.

Both outputs appear whole or not at all (`components.atomic_output`): they are written under a
temporary name and take the target's place only when the run succeeded, so a failed, refused or
killed run leaves the previous output as it was. Input, scores and rejected rows must be three
different files, checked before any work; a run that scores no row fails (its rejected rows are
kept, to say why).

Where the time goes (`make bench-batch`): the chunk stays in Arrow from read to write, with no
pandas frame in between. Categorical features are read as Parquet's own dictionaries, checked and
one-hot encoded per distinct value rather than per row, and written back dictionary-encoded (so a
pandas reader gets them as `category`; the values are the input's). Constant and label columns are
dictionary arrays too, and the writer dictionary-encodes only the columns where that pays (text,
integers), not float columns of mostly distinct values. What remains is mostly the booster itself
and Parquet encoding (about a third of the booster's CPU time).

The output keeps the feature columns, so `mlops monitor check <output>` compares the scored batch
(inputs and, from the `probability` column, predictions) with the version's training reference.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.atomic_output import AtomicOutput, check_writable, same_path
from components.fast_inference import CompiledPipeline, fast_model, model_output
from components.ingest import missing_or_unreachable
from mlops_core.errors import InvalidInputError, bounded_message
from mlops_core.registry import ModelRegistry
from mlops_core.row_checks import Column, check_table, rows_array
from mlops_core.schema import FeatureSchema
from mlops_core.settings import DEFAULT_BATCH_CHUNK_ROWS, DEFAULT_DECISION_THRESHOLD
from mlops_core.step_timing import timed_step

Progress = Callable[[int, int | None], None]  # (rows done, total rows or None when unknown)
OUTPUT_COLUMNS = ("probability", "label", "value", "model_name", "model_version", "run_id")


@dataclass(frozen=True, kw_only=True)
class BatchScoreParams:
    registry_uri: str
    model_name: str
    version: str = "champion"
    input_uri: str
    output_uri: str
    rejected_uri: str = ""  # default: <output without .parquet>.rejected.parquet
    run_id: str = ""  # default: a fresh id
    chunk_rows: int = DEFAULT_BATCH_CHUNK_ROWS
    threshold: float = DEFAULT_DECISION_THRESHOLD
    unknown_category: str = "reject"
    threads: int = 0  # chunks scored at once, each on one core; 0 = every core

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise InvalidInputError(f"chunk_rows must be at least 1, got {self.chunk_rows}")
        if self.threads < 0:
            raise InvalidInputError(
                f"threads must be 0 (every core) or a positive number, got {self.threads}"
            )

    @property
    def rejected_path(self) -> str:
        return self.rejected_uri or rejected_path_for(self.output_uri)


class NothingScoredError(InvalidInputError):
    """Every row was rejected: the run produced no scores (its rejected rows say why)."""


def check_paths(params: BatchScoreParams) -> None:
    """Before any work: the input, the scores and the rejected rows are three different files,
    and both outputs can be written where asked."""
    named = {
        "--input": params.input_uri,
        "--output": params.output_uri,
        "--rejected": params.rejected_path,
    }
    items = list(named.items())
    for i, (flag_a, a) in enumerate(items):
        for flag_b, b in items[i + 1 :]:
            if same_path(a, b):
                raise InvalidInputError(
                    f"{flag_a} and {flag_b} name the same file ({b}): the run would overwrite "
                    "it; give each its own path"
                )
    check_writable(params.output_uri, "--output")
    check_writable(params.rejected_path, "--rejected")


@dataclass
class BatchSummary:
    model_name: str
    model_version: int
    run_id: str
    input_uri: str
    output_uri: str
    rejected_uri: str
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    peak_rss_mb: float = 0.0
    inference_path: str = ""
    reasons: dict[str, int] = field(default_factory=dict)  # first reason -> rows

    @classmethod
    def for_run(cls, params: BatchScoreParams, loaded: LoadedModel) -> BatchSummary:
        """A run's summary before its first row: what it scores, with which model, into where."""
        return cls(
            model_name=params.model_name,
            model_version=loaded.version,
            run_id=params.run_id or uuid.uuid4().hex[:12],
            input_uri=params.input_uri,
            output_uri=params.output_uri,
            rejected_uri=params.rejected_path,
            inference_path="compiled" if isinstance(loaded.model, CompiledPipeline) else "pipeline",
        )

    def stop_clock(self, start: float) -> None:
        """Seconds since `start` (a `time.perf_counter()` reading) and the rows per second."""
        self.seconds = time.perf_counter() - start
        self.rows_per_s = self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rejected_path_for(output_uri: str) -> str:
    stem = output_uri[: -len(".parquet")] if output_uri.endswith(".parquet") else output_uri
    return f"{stem}.rejected.parquet"


# --- reading ------------------------------------------------------------------------------------
def _is_csv(uri: str) -> bool:
    return uri.lower().split("?")[0].endswith((".csv", ".csv.gz"))


def read_chunks(uri: str, schema: FeatureSchema, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """The input as record batches of at most `chunk_rows` rows; opens the file lazily."""
    try:
        fh = fsspec.open(uri, "rb", compression="infer").open()
    except FileNotFoundError as e:
        raise InvalidInputError(missing_or_unreachable(uri, e, "input")) from e
    with fh:
        if _is_csv(uri):
            yield from _csv_chunks(fh, schema, chunk_rows)
        else:
            try:
                names = pq.ParquetFile(fh).schema_arrow.names
                # Text features as dictionaries: Parquet stores them dictionary-encoded already,
                # so no Python string per row is made, and the checks see each value once.
                parquet = pq.ParquetFile(
                    fh,
                    read_dictionary=[
                        f.name for f in schema.categorical_features if f.name in names
                    ],
                )
            except pa.ArrowInvalid as e:
                raise InvalidInputError(f"{uri} is not a Parquet file (or a .csv): {e}") from e
            yield from _rechunk(parquet.iter_batches(batch_size=chunk_rows), chunk_rows)


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of `rows` rows (the last one shorter): a dictionary read ends a batch at each row
    group's end, so small row groups are joined (their dictionaries unified) into full chunks."""
    pending: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have += take
            batch = batch.slice(take)
            if have == rows:
                yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
                pending, have = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _csv_chunks(fh: Any, schema: FeatureSchema, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    from pyarrow import csv

    # Feature columns are read as text: a value that does not parse as a number is a rejected row
    # with a reason, not a failed file. ~200 bytes/row guess keeps blocks near `chunk_rows`.
    types = {f.name: pa.string() for f in schema.features}
    reader = csv.open_csv(
        fh,
        read_options=csv.ReadOptions(block_size=max(1 << 20, min(chunk_rows * 200, 1 << 28))),
        convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=True),
    )
    for batch in reader:
        for start in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(start, chunk_rows)


def total_rows(uri: str) -> int | None:
    """Row count from Parquet metadata (None for CSV: unknown without reading it)."""
    if _is_csv(uri):
        return None
    with fsspec.open(uri, "rb") as fh:
        try:
            return pq.ParquetFile(fh).metadata.num_rows
        except pa.ArrowInvalid as e:
            raise InvalidInputError(f"{uri} is not a Parquet file (or a .csv): {e}") from e


# --- scoring ------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    schema: FeatureSchema
    model: Any
    version: int


def load_model(params: BatchScoreParams) -> LoadedModel:
    registry = ModelRegistry(params.registry_uri)
    version = registry.resolve(params.model_name, params.version)
    pipeline = registry.load_model(params.model_name, version)
    schema = registry.schema(params.model_name, version)
    estimator = pipeline[-1]
    if "n_jobs" in estimator.get_params():
        # One core per model call: chunks are scored side by side (`_score_into`) instead.
        estimator.set_params(n_jobs=1)
    return LoadedModel(schema=schema, model=fast_model(pipeline, schema), version=version)


def predict_columns(model: Any, columns: list[Column]) -> np.ndarray:
    """The model's raw output (class probabilities, or values) for feature columns."""
    if isinstance(model, CompiledPipeline):
        return model.predict_proba_columns(columns)
    return model_output(model, rows_array(columns))


def task_columns(loaded: LoadedModel, out: np.ndarray, threshold: float) -> dict[str, pa.Array]:
    """Per task: `probability` (positive class / predicted class) and `label` in the data's own
    labels, or `value` for regression."""
    schema = loaded.schema
    if schema.task == "regression":
        return {"value": pa.array(np.asarray(out, np.float64), pa.float64())}
    classes = schema.label_classes
    if schema.task == "binary":
        p = out[:, 1]
        index = (p >= threshold).astype(np.int32)
    else:
        index = np.argmax(out, axis=1).astype(np.int32)
        p = out[np.arange(len(out)), index]
    if _int_labels(classes):
        label: pa.Array = pa.array(np.asarray(classes, np.int64)[index], pa.int64())
    else:  # text labels: the class index into the class names, no Python string per row
        label = pa.DictionaryArray.from_arrays(index, pa.array([str(c) for c in classes]))
    return {"probability": pa.array(np.ascontiguousarray(p), pa.float64()), "label": label}


def _int_labels(classes: Any) -> bool:
    return all(isinstance(c, int) and not isinstance(c, bool) for c in classes)


TEXT = pa.dictionary(pa.int32(), pa.string())  # constant and low-cardinality text columns


def _constant(value: str, n: int) -> pa.Array:
    return pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), pa.array([value], pa.string()))


def _as_text(column: pa.Array) -> pa.Array:
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # e.g. nested types: pandas' repr
        return pa.array(column.to_pandas().astype("string"), pa.string())


def rejected_table(bad: pa.RecordBatch, rows: np.ndarray, reasons: np.ndarray) -> pa.Table:
    """Rejected rows as text (whatever the input's types), their row numbers and reasons."""
    columns: dict[str, pa.Array] = {"row": pa.array(rows, pa.int64())}
    for name, column in zip(bad.schema.names, bad.columns, strict=True):
        columns[str(name)] = _as_text(column)
    columns["reason"] = pa.array(reasons.astype(str), pa.string())
    return pa.table(columns)


def _scored_schema(input_schema: pa.Schema, schema: FeatureSchema) -> pa.Schema:
    classes = schema.label_classes
    if schema.task == "regression":
        extra = [pa.field("value", pa.float64())]
    else:
        extra = [
            pa.field("probability", pa.float64()),
            pa.field("label", pa.int64() if _int_labels(classes) else TEXT),
        ]
    extra += [
        pa.field("model_name", TEXT),
        pa.field("model_version", pa.int64()),
        pa.field("run_id", TEXT),
    ]
    numeric = {f.name for f in schema.numeric_features}
    kept = [
        pa.field(f.name, pa.float64()) if f.name in numeric and _is_text(f.type) else f
        for f in input_schema
        if f.name not in OUTPUT_COLUMNS
    ]
    return pa.schema(kept + extra)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _numbers_as_numbers(table: pa.Table, schema: FeatureSchema, columns: list[Any]) -> pa.Table:
    """Numeric features read as text (a CSV's) become the numbers they were checked to be, so
    scores from a CSV carry the types a Parquet input would."""
    for j, f in enumerate(schema.features):
        i = table.schema.get_field_index(f.name)
        if f.is_numeric and i >= 0 and _is_text(table.schema.field(i).type):
            number = pa.array(columns[j], pa.float64(), from_pandas=True)  # NaN: null
            table = table.set_column(i, pa.field(f.name, pa.float64()), number)
    return table


def _rejected_schema(input_schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [pa.field("row", pa.int64())]
        + [pa.field(f.name, pa.string()) for f in input_schema]
        + [pa.field("reason", pa.string())]
    )


def score_chunk(
    batch: pa.RecordBatch, loaded: LoadedModel, params: BatchScoreParams, run_id: str, first: int
) -> tuple[pa.Table | None, pa.Table | None]:
    """One chunk -> (scored table, rejected table); either may be None when empty."""
    checked = check_table(batch, loaded.schema, unknown_category=params.unknown_category)
    good = checked.good
    all_good = bool(good.all())
    scored = rejected = None
    if not all_good:
        bad = ~good
        rejected = rejected_table(
            batch.filter(pa.array(bad)), np.flatnonzero(bad) + first, checked.reasons[bad]
        )
    if good.any():
        columns = checked.columns if all_good else [c[good] for c in checked.columns]
        table = batch if all_good else batch.filter(pa.array(good))
        extra = task_columns(loaded, predict_columns(loaded.model, columns), params.threshold)
        n = table.num_rows
        extra |= {
            "model_name": _constant(params.model_name, n),
            "model_version": pa.array(np.full(n, loaded.version, np.int64)),
            "run_id": _constant(run_id, n),
        }
        tbl = _numbers_as_numbers(pa.Table.from_batches([table]), loaded.schema, columns)
        for name, col in extra.items():
            if name in tbl.column_names:
                tbl = tbl.drop_columns([name])
            tbl = tbl.append_column(name, col)
        scored = tbl
    return scored, rejected


class _ParquetSink:
    """A Parquet file written one chunk at a time (opened at the first chunk), on its own thread:
    Arrow's encoder releases the GIL, so chunk n is written while chunk n+1 is scored. The queue
    holds at most two chunks, so memory stays bounded. The file is written under a temporary name
    (`AtomicOutput`) and takes the target's place only at `commit`."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._output = AtomicOutput(uri)
        self._writer: pq.ParquetWriter | None = None
        self._queue: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"write {uri}", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write_now(table)
                except BaseException as e:  # re-raised on the caller's thread
                    self._error = e

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def _write_now(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._output.open(),
                table.schema,
                use_dictionary=dictionary_columns(table.schema),
                # Min/max of a few categories or a constant prunes nothing, and costs a hash
                # of every row's code: statistics for the other columns only.
                write_statistics=[
                    f.name for f in table.schema if not pa.types.is_dictionary(f.type)
                ],
            )
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        self._writer.write_table(table)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self, empty_schema: pa.Schema) -> None:
        """Write the footer (an empty table of `empty_schema` when no chunk came); not yet in
        place: `commit` does that."""
        self._stop()
        if self._error is not None:
            raise self._error
        if self._writer is None:
            self._write_now(empty_schema.empty_table())
        assert self._writer is not None
        self._writer.close()

    def commit(self) -> None:
        self._output.commit()

    def discard(self) -> None:
        """Drop what was written; the target (and any earlier output there) is left as it was."""
        self._stop()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._output.discard()


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: text and integers (few distinct values, and a
    dictionary array is written as is). Not floats: a column of mostly distinct values is hashed
    into a dictionary the size of the row group before the writer gives up on it."""

    def pays(t: pa.DataType) -> bool:
        return (
            pa.types.is_dictionary(t)
            or pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_integer(t)
            or pa.types.is_boolean(t)
        )

    return [f.name for f in schema if pays(f.type)]


def score_batch(params: BatchScoreParams, progress: Progress | None = None) -> BatchSummary:
    """Score `params.input_uri` into `params.output_uri` (and rejected rows aside)."""
    start = time.perf_counter()
    check_paths(params)
    fs, path = fsspec.core.url_to_fs(params.input_uri)
    try:
        fs.info(path)  # not `exists`: over HTTP it answers False for a refused connection too
    except FileNotFoundError as e:
        raise InvalidInputError(missing_or_unreachable(params.input_uri, e, "input")) from e
    loaded = load_model(params)
    summary = BatchSummary.for_run(params, loaded)
    with arrow_memory_pool():
        _score_into(params, loaded, summary, progress)
    summary.stop_clock(start)
    summary.peak_rss_mb = peak_rss_mb()
    return summary


@contextlib.contextmanager
def arrow_memory_pool() -> Iterator[None]:
    """Arrow's buffers from jemalloc while scoring. Arrow's default, mimalloc, hands each freed
    chunk's pages back to the kernel and faults them in again for the next: on a 1M-row run here
    that was 0.2-0.4 s of system time against ~0.1 s with jemalloc (`make bench-batch`)."""
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _score_into(
    params: BatchScoreParams, loaded: LoadedModel, summary: BatchSummary, progress: Progress | None
) -> None:
    """Read, score and write every chunk, counting into `summary` (its run id and rejected path
    are the run's)."""
    total = total_rows(params.input_uri)
    out, aside = _ParquetSink(params.output_uri), _ParquetSink(summary.rejected_uri)
    input_schema: pa.Schema | None = None
    workers = params.threads or os.cpu_count() or 1
    pending: deque[tuple[int, Future[tuple[pa.Table | None, pa.Table | None]]]] = deque()

    def collect() -> None:  # the oldest chunk's result, in input order
        rows, future = pending.popleft()
        write_chunk(summary, out, aside, rows, *future.result())
        if progress is not None:
            progress(summary.rows, total)

    try:
        # Chunks are scored side by side, one core each (the model runs single-threaded): on 2
        # cores this beat one chunk at a time on a 2-thread booster by 10-15% end to end, as the
        # reader and the Parquet writer then share cores with whole chunks instead of stalling
        # an OpenMP loop whose threads wait for each other. At most `workers + 1` chunks are
        # in flight, so memory stays bounded.
        with ThreadPoolExecutor(workers, thread_name_prefix="score") as pool:
            read = 0
            chunks = read_chunks(params.input_uri, loaded.schema, params.chunk_rows)
            for batch in _reading(chunks, params.input_uri):
                input_schema = batch.schema
                future = pool.submit(score_chunk, batch, loaded, params, summary.run_id, read)
                pending.append((batch.num_rows, future))
                read += batch.num_rows
                if len(pending) > workers:
                    collect()
            while pending:
                collect()
        if input_schema is None:
            raise InvalidInputError(f"{params.input_uri} holds no rows: nothing to score")
        # Both files always exist (empty when no row went there): a pipeline's outputs are fixed.
        out.finish(_scored_schema(input_schema, loaded.schema))
        aside.finish(_rejected_schema(input_schema))
    except BaseException:
        out.discard()
        aside.discard()
        raise
    commit_outputs(out, aside, summary)


def commit_outputs(out: _ParquetSink, aside: _ParquetSink, summary: BatchSummary) -> None:
    """Keep both finished files; when no row scored, keep only the rejected rows and fail."""
    if summary.scored == 0:
        out.discard()
        aside.commit()  # the reasons are the useful part of a run that scored nothing
        raise NothingScoredError(_nothing_scored(summary))
    out.commit()
    aside.commit()


def write_chunk(
    summary: BatchSummary,
    out: _ParquetSink,
    aside: _ParquetSink,
    rows: int,
    scored: pa.Table | None,
    rejected: pa.Table | None,
) -> None:
    """Write one chunk's scored and rejected rows (callers go in input order) and count them."""
    summary.rows += rows
    if scored is not None:
        out.write(scored)
        summary.scored += scored.num_rows
    if rejected is not None:
        aside.write(rejected)
        count_rejected(summary, rejected)


def count_rejected(summary: BatchSummary, rejected: pa.Table) -> None:
    """Add a chunk's rejected rows to the summary, by first reason."""
    summary.rejected += rejected.num_rows
    for reason in rejected.column("reason").to_pylist():
        first = reason.split(";")[0].split(", got")[0]
        summary.reasons[first] = summary.reasons.get(first, 0) + 1


def _nothing_scored(summary: BatchSummary) -> str:
    reason, n = max(summary.reasons.items(), key=lambda kv: kv[1], default=("?", 0))
    return (
        f"no row was scored: all {summary.rows:,} rows of {summary.input_uri} were rejected "
        f"(most often, {n:,} rows: {bounded_message(reason, 300)}); the rejected rows are in "
        f"{summary.rejected_uri}, and {summary.output_uri} was left as it was"
    )


def _reading(chunks: Iterator[pa.RecordBatch], uri: str) -> Iterator[pa.RecordBatch]:
    """The chunks, with a file Arrow cannot decode (an empty CSV, a corrupt Parquet page, a bad
    CSV line) turned into one line naming it instead of a traceback."""
    try:
        yield from chunks
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise InvalidInputError(f"cannot read {uri}: {bounded_message(str(e), 500)}") from e


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM (reset at exec, unlike ru_maxrss, which a child
    started by fork + exec inherits from its parent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The pieces the Dask path (components/batch_score_dask.py) shares with this one.
ParquetSink = _ParquetSink
scored_schema = _scored_schema
rejected_schema = _rejected_schema


@timed_step("batch_score")
def batch_score_step(*, params: BatchScoreParams, summary_path: str) -> dict[str, Any]:
    """The pipeline step: score, then write the summary JSON (the task's small artifact)."""
    summary = score_batch(params).to_dict()
    with fsspec.open(summary_path, "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def drift_of_scores(
    scores_path: str, registry_uri: str, model_name: str, version: str = "champion"
) -> dict[str, Any]:
    """A scored batch against the version's training reference: features and predictions."""
    from mlops_core.drift import compare

    registry = ModelRegistry(registry_uri)
    n = registry.resolve(model_name, version)
    schema = registry.schema(model_name, n)
    # The monitored prediction per task (as in the training reference): binary, the positive-class
    # probability; regression, the value; multiclass, not compared here (features only).
    output = {"binary": "probability", "regression": "value"}.get(schema.task)
    columns = [*schema.feature_names, *([output] if output else [])]
    with fsspec.open(scores_path, "rb") as fh:
        frame = pq.read_table(fh, columns=columns).to_pandas()
    report = compare(
        registry.reference(model_name, n),
        schema.coerce_frame(frame),
        predictions=frame[output].to_numpy(dtype=float) if output else None,
    )
    return report.to_dict() | {
        "model_version": n,
        "drifted": [f.feature for f in report.drifted],
        "share_drifted": report.share_drifted,
    }


@timed_step("batch_drift")
def batch_drift_step(
    *, scores_path: str, registry_uri: str, model_name: str, version: str, report_path: str
) -> dict[str, Any]:
    doc = drift_of_scores(scores_path, registry_uri, model_name, version)
    with fsspec.open(report_path, "w") as fh:
        json.dump(doc, fh, indent=2)
    return doc
