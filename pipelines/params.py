"""The training pipeline's parameters: each one, its type, default and help, declared once here.

`TrainingParams` (data, training, evaluation, gate) and `DeployParams` (the optional last step) are
read by the CLI (`mlops pipeline run/submit`: option defaults and help), the local runner
(`run_training_locally`) and the KFP pipeline, whose signature `pipeline_signature()` generates from
these fields, so the compiled YAML's defaults are these defaults. The step functions in
components/ take every one of them as a required argument: none of them has a default of its own.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from mlops_core.errors import InvalidInputError
from mlops_core.estimators import check_estimator, estimators_help
from mlops_core.settings import (
    COMPUTE_CHOICES,
    DEFAULT_CLUSTER_FEATURE_SERVER_URL,
    DEFAULT_COMPUTE,
    DEFAULT_DASK_WORKER_CPU,
    DEFAULT_DASK_WORKER_MEMORY,
    DEFAULT_DASK_WORKERS,
    DEFAULT_DECISION_THRESHOLD,
    DEFAULT_FIRST_CANARY_PERCENT,
    DEFAULT_MODEL_NAME,
    DEFAULT_NAMESPACE,
)


class ParamsError(InvalidInputError):
    """A parameter's value is out of range, or does not fit another one (estimator vs task)."""


def _param(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class ComputeParams:
    """Where training and batch scoring run (components/dask_compute.py): declared once, taken by
    the training and the batch scoring pipelines and their CLI commands."""

    compute: str = _param(
        DEFAULT_COMPUTE,
        f"{' | '.join(COMPUTE_CHOICES)}: one process, or a Dask cluster for the step (a "
        "LocalCluster locally, a DaskCluster of the dask-kubernetes operator on a cluster); "
        "docs/scale.md says when each pays",
    )
    dask_workers: int = _param(DEFAULT_DASK_WORKERS, "compute=dask: number of workers")
    dask_worker_memory: str = _param(
        DEFAULT_DASK_WORKER_MEMORY, "compute=dask: memory limit of each worker (e.g. 2GiB)"
    )
    dask_worker_cpu: float = _param(DEFAULT_DASK_WORKER_CPU, "compute=dask: CPUs of each worker")

    def compute_spec(self) -> Any:
        """The checked `components.dask_compute.ComputeSpec` (a bad value: a one-line error)."""
        from components.dask_compute import ComputeSpec

        return ComputeSpec(
            compute=self.compute,
            workers=self.dask_workers,
            worker_memory=self.dask_worker_memory,
            worker_cpu=self.dask_worker_cpu,
        )


@dataclass(frozen=True, kw_only=True)
class TrainingParams(ComputeParams):
    """What data to train on, how, where, and when the candidate replaces the champion."""

    data_source: str = _param(
        "",
        "CSV/Parquet file or folder on any fsspec path (local, http, s3); empty or 'synthetic': "
        "the churn generator",
    )
    feature_store: str = _param(
        "",
        "a feature repository folder (components/feature_store.py): train on its point-in-time-correct training "
        "set for the labels in data_source (empty: the repository's labels table)",
    )
    target: str = _param("churned", "the label column (labels of any type, or a number)")
    task: str = _param(
        "auto",
        "auto | binary | multiclass | regression (auto: from the target's type and number of "
        "distinct values; the choice and its reason are printed)",
    )
    positive_class: str = _param(
        "",
        "binary: the label that is the positive class (default: a yes/true/1 label, else the "
        "last label in sorted order)",
    )
    schema_uri: str = _param(
        "",
        "a FeatureSchema JSON (docs/data.md); empty: the generator's schema or one inferred "
        "from the data",
    )
    drop_columns: str = _param(
        "",
        "a column to leave out of the features (repeatable; as a pipeline parameter: "
        "comma-separated names)",
    )
    max_categories: int = _param(
        50,
        "most distinct values a text column may hold to be a categorical feature; a text column "
        "with more is set aside if at least half its values are distinct (an identifier), "
        "else refused",
    )
    scenario: str = _param("clean", "synthetic data's drift scenario")
    rows: int = _param(20000, "synthetic rows")
    seed: int = _param(0, "data, split and estimator seed")
    holdout_fraction: float = _param(
        0.2, "share of rows held out for evaluation and the champion comparison"
    )
    estimator: str = _param("xgboost", estimators_help())
    primary_metric: str = _param(
        "", "the metric the gate compares (default per task: roc_auc, macro_f1, rmse)"
    )
    margin: float = _param(0.005, "required improvement over the champion on primary_metric")
    max_regression: float = _param(0.01, "the differential test's tolerance vs the champion")
    threshold: float = _param(
        DEFAULT_DECISION_THRESHOLD, "decision threshold for accuracy/precision/recall"
    )
    slice_column: str = _param(
        "", "per-slice metrics by this column (default: the schema's first categorical feature)"
    )
    invariance_tolerance: float = _param(
        0.02, "mean prediction shift allowed when an invariant feature changes"
    )
    fail_on_drift: bool = _param(False, "drift vs the champion's reference fails the run")
    leakage_threshold: float = _param(
        0.99,
        "a feature whose single-feature model scores at least this on held-out rows (ROC AUC "
        "for binary, balanced accuracy for multiclass, R^2 for regression) is reported as "
        "possible target leakage",
    )
    fail_on_leakage: bool = _param(False, "possible target leakage fails the run at validation")

    def __post_init__(self) -> None:
        """Refuse values no step could use, before any step runs."""
        check_estimator(self.estimator, self.task)
        if self.compute_spec().is_dask:
            from components.train_dask import check_dask_estimator

            check_dask_estimator(self.estimator)
        if not 0 < self.holdout_fraction < 1:
            raise ParamsError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.max_categories < 1:
            raise ParamsError(f"max_categories must be at least 1, got {self.max_categories}")
        if not 0.5 < self.leakage_threshold <= 1:
            raise ParamsError(
                f"leakage_threshold must be in (0.5, 1], got {self.leakage_threshold}"
            )
        if self.rows < 1:
            raise ParamsError(f"rows must be at least 1, got {self.rows}")

    def arguments(self) -> dict[str, Any]:
        return asdict(self)

    def for_step(self, step: Any, **given: Any) -> dict[str, Any]:
        """`given` plus these parameters for the ones `step` (a step function) takes.

        For callers outside the pipeline (tests, benchmarks) that call a step function directly.
        """
        accepted = inspect.signature(step).parameters
        return {k: v for k, v in self.arguments().items() if k in accepted} | given


@dataclass(frozen=True, kw_only=True)
class DeployParams:
    """The deploy step: off for local runs; `mlops pipeline submit` turns it on."""

    deploy: bool = _param(False, "serve the new champion with KServe after registering it")
    serving_image: str = _param("", "the model server image")
    namespace: str = _param(DEFAULT_NAMESPACE, "namespace of the InferenceService")
    canary_percent: int = _param(
        DEFAULT_FIRST_CANARY_PERCENT, "a new champion's first canary step (percent of traffic)"
    )
    feature_server_url: str = _param(
        DEFAULT_CLUSTER_FEATURE_SERVER_URL,
        "Feast's feature server the model server fetches the features of a request sent by "
        "customer id from (its MLOPS_FEATURE_SERVER_URL; default: the one `make deploy` runs); "
        "empty: every request carries every feature",
    )

    def arguments(self) -> dict[str, Any]:
        return asdict(self)


def default(cls: type, name: str) -> Any:
    """The declared default of `cls.name` (for a CLI option)."""
    f = _field(cls, name)
    if f.default is MISSING:
        raise TypeError(f"{cls.__name__}.{name} has no default")
    return f.default


def help_for(cls: type, name: str) -> str:
    return _field(cls, name).metadata.get("help", "")


def _field(cls: type, name: str) -> Any:
    by_name = {f.name: f for f in fields(cls)}
    if name not in by_name:
        raise KeyError(f"{cls.__name__} has no parameter {name!r}")
    return by_name[name]


def pipeline_signature(defaults: dict[str, Any] | None = None) -> inspect.Signature:
    """The KFP pipeline function's signature: registry_uri, then every declared field.

    KFP reads the parameters' names, annotations and defaults from `inspect.signature`, so a
    function that carries this `__signature__` compiles with exactly these inputs and defaults.
    `defaults` replaces declared defaults and may give registry_uri (else required) one: the
    cluster's values in the golden YAML (pipelines/training.py `cluster_defaults`).
    """
    given = dict(defaults or {})
    unknown = (
        set(given)
        - {"registry_uri", "model_name"}
        - {f.name for cls in (TrainingParams, DeployParams) for f in fields(cls)}
    )
    if unknown:
        raise KeyError(f"not pipeline parameters: {sorted(unknown)}")

    def param(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> Any:
        return inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=given.get(name, default),
            annotation=annotation,
        )

    params = [param("registry_uri", str)]
    for cls in (TrainingParams, DeployParams):
        hints = typing.get_type_hints(cls)  # real types: this module postpones annotations
        params += [param(f.name, hints[f.name], f.default) for f in fields(cls)]
        if cls is TrainingParams:
            params.append(param("model_name", str, DEFAULT_MODEL_NAME))
    return inspect.Signature(params, return_annotation=str)
