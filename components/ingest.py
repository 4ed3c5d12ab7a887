"""Ingest: bring tabular data in from any fsspec path (or the churn generator) and split it.

A user brings their own CSV or Parquet file (local folder, http(s), s3) and names the target
column; when no schema document is given, one is inferred from the data and saved next to the
outputs so every later step (and the registered model) uses the same columns, types and ranges.
Outputs are Parquet: typed, compact and fast to read back in the next step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import fsspec
import pandas as pd
from sklearn.model_selection import train_test_split

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.data_fingerprint import fingerprint
from mlops_core.errors import MlopsError
from mlops_core.estimators import check_estimator
from mlops_core.schema import FeatureSchema, SchemaError, identifier_columns, infer_schema
from mlops_core.settings import load_settings
from mlops_core.step_timing import timed_step
from mlops_core.target import labels_as_written, settle_target

SYNTHETIC_SOURCE = "synthetic"  # `data_source` value (or empty) that selects the churn generator
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


class IngestError(MlopsError):
    """The data source cannot be read or does not contain what was asked for."""


@dataclass(frozen=True)
class IngestSummary:
    data_source: str
    rows: int
    train_rows: int
    holdout_rows: int
    columns: list[str]
    target: str
    positive_rate: float  # binary: share of the positive class; NaN for other tasks
    fingerprint: str
    schema_inferred: bool
    task: str = "binary"
    task_reason: str = ""
    classes: list[Any] = field(default_factory=list)
    target_missing_dropped: int = 0  # rows without a target value, dropped before the split
    set_aside: dict[str, str] = field(default_factory=dict)  # column -> why it is no feature
    # From a feature store: the training set's fingerprint, dropped label rows and the feature
    # views' definitions (components/feature_store.py's FeatureLineage); empty otherwise.
    feature_lineage: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_table(
    uri: str, *, label_columns: tuple[str, ...] = (), **storage_options: Any
) -> pd.DataFrame:
    """Read one CSV or Parquet file (chosen by suffix) from any fsspec URL, or a folder of them.

    A CSV's `label_columns` keep the type their values are written in (`labels_as_written`):
    "007" and "010" stay text instead of becoming the numbers 7 and 10."""
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    try:
        is_dir = fs.isdir(path)
    except (OSError, ValueError):  # e.g. http servers that do not list
        is_dir = False
    if is_dir:
        files = sorted(p for p in fs.ls(path, detail=False) if _table_format(p, strict=False))
        if not files:
            raise IngestError(f"folder {uri} holds no .csv or .parquet files")
        return pd.concat(
            [
                read_table(fs.unstrip_protocol(p), label_columns=label_columns, **storage_options)
                for p in files
            ],
            ignore_index=True,
        )
    fmt = _table_format(uri, strict=True)
    try:
        with fsspec.open(uri, "rb", compression="infer", **storage_options) as fh:
            if fmt == "parquet":
                return pd.read_parquet(fh)
            df = pd.read_csv(fh, dtype={c: str for c in label_columns})
    except FileNotFoundError as e:
        raise IngestError(missing_or_unreachable(uri, e)) from e
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as e:
        raise IngestError(f"cannot read {uri} as {fmt}: {e}") from e
    for column in label_columns:
        if column in df.columns:
            df[column] = labels_as_written(df[column])
    return df


def missing_or_unreachable(uri: str, error: FileNotFoundError, what: str = "data source") -> str:
    """Say whether `uri` is missing or could not be reached. fsspec's HTTP filesystem raises
    FileNotFoundError for a refused connection or an unknown host too; the connection error
    (an OSError) is then in the exception's chain."""
    cause = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError):
            return f"could not connect to read {uri}: {cause}"
        cause = cause.__cause__ or cause.__context__
    return f"{what} {uri} does not exist"


def _table_format(uri: str, *, strict: bool) -> str:
    name = uri.lower().split("?", 1)[0]
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if strict:
        raise IngestError(
            f"cannot tell the format of {uri}: expected a name ending in "
            f"{list(_CSV_SUFFIXES + _PARQUET_SUFFIXES)}"
        )
    return ""


def arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Make mixed-type object columns storable in Parquet without losing the bad values.

    A column holding numbers and strings (e.g. "n/a" in a numeric column) becomes all strings, so
    validation still sees the value that does not parse and can report it.
    """
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype != object:
            continue
        present = s.dropna()
        if len(present) and not all(isinstance(v, str) for v in present):
            out[col] = s.map(str).where(s.notna(), None)
    return out


def load_source(
    *, data_source: str, target: str, scenario: str, rows: int, seed: int
) -> tuple[pd.DataFrame, FeatureSchema | None]:
    """The raw frame and, for the generator, its known schema."""
    if data_source in ("", SYNTHETIC_SOURCE):
        if target != CHURN_SCHEMA.target:
            raise IngestError(
                f"the synthetic churn data's target is {CHURN_SCHEMA.target!r}, not {target!r}"
            )
        return generate_churn(rows, scenario=scenario, seed=seed), CHURN_SCHEMA
    df = read_table(data_source, label_columns=(target,))
    if target not in df.columns:
        raise IngestError(
            f"target column {target!r} is not in {data_source}; its columns are {list(df.columns)}"
        )
    return df, None


def load_training_set(
    *, feature_store: str, data_source: str, target: str
) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """The point-in-time-correct training set for the labels in `data_source` (default: the
    repository's own labels table), its lineage, and the name of its source."""
    from components.feature_store import FeatureStoreConfig, training_set

    if target != CHURN_SCHEMA.target:
        raise IngestError(
            f"the churn feature store's target is {CHURN_SCHEMA.target!r}, not {target!r}"
        )
    config = FeatureStoreConfig(repo_path=feature_store)
    labels_uri = data_source or config.table_uri("labels")
    labels = read_table(labels_uri, label_columns=(target,))
    result = training_set(config, labels)
    frame = result.frame.loc[:, [*CHURN_SCHEMA.feature_names, CHURN_SCHEMA.target]]
    return frame, result.lineage.to_dict(), f"feature-store:{feature_store}:{labels_uri}"


def split_holdout(
    df: pd.DataFrame, target: str, holdout_fraction: float, seed: int, *, stratify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded train/holdout split, stratified on a class target when every class has two rows."""
    if not 0 < holdout_fraction < 1:
        raise IngestError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    y = df[target]
    counts = y.value_counts(dropna=True)
    by = y if stratify and y.notna().all() and len(counts) > 1 and counts.min() >= 2 else None
    train, holdout = train_test_split(
        df, test_size=holdout_fraction, random_state=seed, stratify=by
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def drop_asked(df: pd.DataFrame, target: str, drop_columns: str) -> dict[str, str]:
    """The columns `drop_columns` (comma-separated) names, each with its reason; every one must
    be a column of the data other than the target."""
    names = [c.strip() for c in drop_columns.split(",") if c.strip()]
    unknown = [c for c in names if c not in df.columns]
    if unknown:
        raise IngestError(
            f"--drop names columns the data does not have: {unknown}; "
            f"its columns are {[str(c) for c in df.columns]}"
        )
    if target in names:
        raise IngestError(f"--drop names the target column {target!r}")
    return dict.fromkeys(names, "dropped: --drop")


def settle_schema(
    df: pd.DataFrame,
    *,
    target: str,
    schema_uri: str,
    known_schema: FeatureSchema | None,
    max_categories: int,
    set_aside: dict[str, str],
) -> tuple[FeatureSchema, dict[str, str]]:
    """The schema (given, the generator's, or inferred) without the `set_aside` columns, and
    `set_aside` plus, for an inferred schema, the identifier-like columns found."""
    if schema_uri or known_schema is not None:
        if schema_uri:
            schema = FeatureSchema.load(schema_uri)
            if schema.target != target:
                raise SchemaError(
                    f"schema {schema_uri} has target {schema.target!r}, not {target!r}"
                )
        else:
            schema = known_schema  # type: ignore[assignment]
        kept = tuple(f for f in schema.features if f.name not in set_aside)
        return replace(schema, features=kept), set_aside
    rest = df.drop(columns=list(set_aside))
    set_aside = set_aside | identifier_columns(rest, target, max_categories=max_categories)
    schema = infer_schema(df.drop(columns=list(set_aside)), target, max_categories=max_categories)
    return schema, set_aside


def ingest(
    *,
    data_source: str,
    target: str,
    train_path: str,
    holdout_path: str,
    schema_path: str,
    schema_uri: str,
    scenario: str,
    rows: int,
    seed: int,
    holdout_fraction: float,
    task: str,
    positive_class: str,
    drop_columns: str,
    max_categories: int,
    estimator: str,
    feature_store: str,
) -> IngestSummary:
    """Read the data, settle its schema, split it and write train/holdout Parquet + schema JSON.

    The schema comes from `schema_uri` when given, from the generator for synthetic data, and is
    otherwise inferred from this data (and saved, so the user can edit and pass it next time).
    Columns named in `drop_columns`, and identifier-like columns of an inferred schema, are set
    aside: no feature. The estimator is checked against the settled task before anything is
    written, so a mismatch stops the run here.

    With `feature_store` (a feature repository), the rows are its point-in-time-correct training
    set for the labels in `data_source`, and the summary carries the set's lineage.
    """
    lineage: dict[str, Any] = {}
    if feature_store:
        df, lineage, data_source = load_training_set(
            feature_store=feature_store, data_source=data_source, target=target
        )
        known_schema: FeatureSchema | None = CHURN_SCHEMA
    else:
        df, known_schema = load_source(
            data_source=data_source, target=target, scenario=scenario, rows=rows, seed=seed
        )
    if df.empty:
        raise IngestError(f"data source {data_source or SYNTHETIC_SOURCE!r} has no rows")
    schema, set_aside = settle_schema(
        df,
        target=target,
        schema_uri=schema_uri,
        known_schema=known_schema,
        max_categories=max_categories,
        set_aside=drop_asked(df, target, drop_columns),
    )
    inferred = not schema_uri and known_schema is None
    missing = [c for c in [*schema.feature_names, schema.target] if c not in df.columns]
    if missing:
        raise SchemaError(f"data lacks columns the schema names: {missing}")
    spec = settle_target(
        df[target],
        task=task,
        positive_class=positive_class,
        target=target,
        max_classes=load_settings().max_classes,
    )
    check_estimator(estimator, spec.task)
    # Labels 0/1 need no encoding (the schema's default): the churn schema stays as it is.
    schema = replace(schema, task=spec.task, classes=() if spec.classes == (0, 1) else spec.classes)
    df = arrow_safe(df.loc[df[target].notna(), [*schema.feature_names, schema.target]])
    train, holdout = split_holdout(
        df, target, holdout_fraction, seed, stratify=schema.is_classifier
    )
    train.to_parquet(train_path, index=False)
    holdout.to_parquet(holdout_path, index=False)
    schema.save(schema_path)
    positive_rate = (
        float((schema.encode_target(df[target]) == 1).mean())
        if schema.task == "binary"
        else float("nan")
    )
    return IngestSummary(
        data_source=data_source or f"{SYNTHETIC_SOURCE}:{scenario}:rows={rows}:seed={seed}",
        rows=len(df),
        train_rows=len(train),
        holdout_rows=len(holdout),
        columns=[str(c) for c in df.columns],
        target=target,
        positive_rate=positive_rate,
        fingerprint=fingerprint(df),
        schema_inferred=inferred,
        task=spec.task,
        task_reason=spec.reason,
        classes=list(schema.label_classes),
        target_missing_dropped=spec.dropped_missing,
        set_aside=set_aside,
        feature_lineage=lineage,
    )


@timed_step("ingest")
def ingest_step(*, summary_path: str, **kwargs: Any) -> IngestSummary:
    """The pipeline step: `ingest` plus its summary (fingerprint, rows, source) as JSON."""
    summary = ingest(**kwargs)
    for column, why in summary.set_aside.items():  # the task's log: one line per column
        print(f"set aside column {column!r}: {why}")
    with open(summary_path, "w") as fh:
        json.dump(summary.to_dict(), fh, indent=2)
    return summary
