"""The thin KFP wrappers over the pipeline steps: the only module in components/ that imports KFP.

Each wrapper is a lightweight Python component whose body imports the project's plain step function
and calls it with artifact paths. `base_image` is the project's component image (which has this
project installed) and `install_kfp_package=False`, so the same definition runs in
`kfp.local.SubprocessRunner` (the current interpreter, no Docker) and on a cluster. The image is a
compile-time argument: `build_components(image)` makes the set for one image.
"""

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kfp import dsl
from kfp.dsl import (
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

IMAGE_REPOSITORY = "mlops-platform/components"  # versions.mk's COMPONENT_IMAGE repository
SERVING_IMAGE_REPOSITORY = "mlops-platform/serving"  # versions.mk's SERVING_IMAGE repository


def release_tag() -> str:
    """The package version: the tag `make images` gives both images besides the git revision."""
    try:
        return version("mlops-platform")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "dev"


def default_image() -> str:
    """`mlops-platform/components:<package version>`: fixed per release, so the golden YAML is."""
    return f"{IMAGE_REPOSITORY}:{release_tag()}"


def default_serving_image() -> str:
    """`mlops-platform/serving:<package version>`: the golden YAML's deploy step serves it."""
    return f"{SERVING_IMAGE_REPOSITORY}:{release_tag()}"


# --- component bodies --------------------------------------------------------------------------
# KFP ships each body's source to the task, so every body imports what it uses itself.


def ingest(
    data_source: str,
    target: str,
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
    train: Output[Dataset],
    holdout: Output[Dataset],
    schema: Output[Artifact],
    summary: Output[Artifact],
):
    """Read the data (or generate churn data), settle its schema (identifiers and --drop set
    aside), check the estimator fits the task, split train/holdout."""
    from components.ingest import ingest_step

    ingest_step(
        data_source=data_source,
        target=target,
        schema_uri=schema_uri,
        scenario=scenario,
        rows=rows,
        seed=seed,
        holdout_fraction=holdout_fraction,
        task=task,
        positive_class=positive_class,
        drop_columns=drop_columns,
        max_categories=max_categories,
        estimator=estimator,
        feature_store=feature_store,
        train_path=train.path,
        holdout_path=holdout.path,
        schema_path=schema.path,
        summary_path=summary.path,
    )


def validate(
    train: Input[Dataset],
    holdout: Input[Dataset],
    schema: Input[Artifact],
    registry_uri: str,
    model_name: str,
    fail_on_drift: bool,
    leakage_threshold: float,
    fail_on_leakage: bool,
    report: Output[Markdown],
    summary: Output[Artifact],
    validation_metrics: Output[Metrics],
):
    """Schema checks and drift vs the champion's reference: the report (Markdown, the KFP UI shows
    it) and the verdict in `summary`; `require_valid_data` fails the run on a failed verdict."""
    from components.validate import validate_step

    validate_step(
        data_paths=[train.path, holdout.path],
        schema_path=schema.path,
        report_path=report.path,
        summary_path=summary.path,
        registry_uri=registry_uri,
        model_name=model_name,
        fail_on_drift=fail_on_drift,
        leakage_threshold=leakage_threshold,
        fail_on_leakage=fail_on_leakage,
        metrics_sink=validation_metrics,
        raise_on_failure=False,
    )


def require_valid_data(summary: Input[Artifact], report: Input[Markdown]):
    """Fail the run when validation failed (schema always; drift, leakage if asked to)."""
    from components.validate import require_valid_data

    require_valid_data(summary_path=summary.path, report_path=report.path)


def train(
    train_data: Input[Dataset],
    schema: Input[Artifact],
    estimator: str,
    seed: int,
    compute: str,
    dask_workers: int,
    dask_worker_memory: str,
    dask_worker_cpu: float,
    model: Output[Model],
    reference: Output[Artifact],
    summary: Output[Artifact],
):
    """Fit the scikit-learn Pipeline; save it (skops) and its drift reference profile. With
    compute=dask, on a Dask cluster started for this step (the same artifact)."""
    from components.dask_compute import ComputeSpec, workers_uri
    from components.train import TrainParams, train_step
    from components.train_dask import train_files_on_dask

    spec = ComputeSpec(
        compute=compute,
        workers=dask_workers,
        worker_memory=dask_worker_memory,
        worker_cpu=dask_worker_cpu,
    )
    paths = {
        "train_path": train_data.path,
        "schema_path": schema.path,
        "model_path": model.path,
        "reference_path": reference.path,
        "summary_path": summary.path,
    }
    params = TrainParams(estimator=estimator, seed=seed)
    if spec.is_dask:
        paths["train_path"] = workers_uri(train_data.uri, train_data.path)
        train_files_on_dask(**paths, params=params, spec=spec)
    else:
        train_step(**paths, params=params)


def evaluate(
    model: Input[Model],
    holdout: Input[Dataset],
    schema: Input[Artifact],
    registry_uri: str,
    model_name: str,
    threshold: float,
    slice_column: str,
    primary_metric: str,
    max_regression: float,
    invariance_tolerance: float,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
):
    """Holdout metrics, slices and ML tests, the champion scored on the same holdout."""
    from components.evaluate import evaluate_step

    evaluate_step(
        model_path=model.path,
        holdout_path=holdout.path,
        schema_path=schema.path,
        evaluation_path=evaluation.path,
        registry_uri=registry_uri,
        model_name=model_name,
        threshold=threshold,
        slice_column=slice_column,
        primary_metric=primary_metric,
        max_regression=max_regression,
        invariance_tolerance=invariance_tolerance,
        metrics_sink=metrics,
        classification_sink=classification,
    )


def gate(
    evaluation: Input[Artifact],
    primary_metric: str,
    margin: float,
    decision: Output[Artifact],
) -> bool:
    """Promote only if the tests passed and the candidate beats the champion by `margin`."""
    from components.gate import gate_step

    return gate_step(
        evaluation_path=evaluation.path,
        decision_path=decision.path,
        primary_metric=primary_metric,
        margin=margin,
    ).promote


def register(
    model: Input[Model],
    schema: Input[Artifact],
    reference: Input[Artifact],
    evaluation: Input[Artifact],
    decision: Input[Artifact],
    ingest_summary: Input[Artifact],
    train_summary: Input[Artifact],
    registry_uri: str,
    model_name: str,
    run_id: str,
    result: Output[Artifact],
) -> str:
    """Register the version with its lineage; set the champion if the gate passed."""
    import json

    from components.register import register_step

    return json.dumps(
        register_step(
            model_path=model.path,
            schema_path=schema.path,
            reference_path=reference.path,
            evaluation_path=evaluation.path,
            decision_path=decision.path,
            ingest_summary_path=ingest_summary.path,
            train_summary_path=train_summary.path,
            registry_uri=registry_uri,
            model_name=model_name,
            run_id=run_id,
            output_path=result.path,
        )
    )


def deploy(
    register_result: str,
    enabled: bool,
    serving_image: str,
    namespace: str,
    service_name: str,
    canary_percent: int,
    feature_server_url: str,
) -> str:
    """Serve the new champion: create the InferenceService (100%) or roll it out as a canary."""
    import json

    from components.deploy import deploy_step

    return json.dumps(
        deploy_step(
            register_result=json.loads(register_result),
            enabled=enabled,
            serving_image=serving_image,
            namespace=namespace,
            service_name=service_name,
            canary_percent=canary_percent,
            feature_server_url=feature_server_url,
        )
    )


def batch_score(
    registry_uri: str,
    model_name: str,
    version: str,
    input_uri: str,
    chunk_rows: int,
    unknown_category: str,
    threshold: float,
    run_id: str,
    compute: str,
    dask_workers: int,
    dask_worker_memory: str,
    dask_worker_cpu: float,
    scores: Output[Dataset],
    rejected: Output[Dataset],
    summary: Output[Artifact],
) -> str:
    """Score a CSV/Parquet file with a registered version; bad rows aside with their reasons.
    With compute=dask, a Parquet file or folder is scored on a Dask cluster started for this step."""
    import json

    from components.batch_score import BatchScoreParams, batch_score_step
    from components.batch_score_dask import batch_score_dask_step
    from components.dask_compute import ComputeSpec

    spec = ComputeSpec(
        compute=compute,
        workers=dask_workers,
        worker_memory=dask_worker_memory,
        worker_cpu=dask_worker_cpu,
    )

    params = BatchScoreParams(
        registry_uri=registry_uri,
        model_name=model_name,
        version=version,
        input_uri=input_uri,
        output_uri=scores.path,
        rejected_uri=rejected.path,
        run_id=run_id,
        chunk_rows=chunk_rows,
        threshold=threshold,
        unknown_category=unknown_category,
    )
    if spec.is_dask:
        return json.dumps(
            batch_score_dask_step(params=params, spec=spec, summary_path=summary.path)
        )
    return json.dumps(batch_score_step(params=params, summary_path=summary.path))


def batch_drift(
    scores: Input[Dataset],
    registry_uri: str,
    model_name: str,
    version: str,
    report: Output[Artifact],
    drift_metrics: Output[Metrics],
) -> str:
    """The scored batch (inputs and predictions) against the version's training reference."""
    import json

    from components.batch_score import batch_drift_step

    doc = batch_drift_step(
        scores_path=scores.path,
        registry_uri=registry_uri,
        model_name=model_name,
        version=version,
        report_path=report.path,
    )
    drift_metrics.log_metric("share_drifted", doc["share_drifted"])
    drift_metrics.log_metric("rows", doc["rows"])
    return json.dumps({"drifted": doc["drifted"], "share_drifted": doc["share_drifted"]})


def materialize_features(feature_repo: str, end: str, summary: Output[Artifact]) -> str:
    """Load each feature view's rows since its last materialization (the first time: since its
    earliest event) up to `end` (ISO 8601; empty: now) into the online store."""
    import json

    from components.materialize_features import materialize_features_step

    return json.dumps(
        materialize_features_step(feature_repo=feature_repo, end=end, summary_path=summary.path)
    )


# --- the factory -------------------------------------------------------------------------------

_BODIES = {
    "ingest": ingest,
    "validate": validate,
    "require_valid_data": require_valid_data,
    "train": train,
    "evaluate": evaluate,
    "gate": gate,
    "register": register,
    "deploy": deploy,
}


@dataclass(frozen=True)
class TrainingComponents:
    """The training pipeline's components, built for one image."""

    image: str
    ingest: Any
    validate: Any
    require_valid_data: Any
    train: Any
    evaluate: Any
    gate: Any
    register: Any
    deploy: Any


def component(body: Any, image: str) -> Any:
    """One body as a lightweight component on `image` (also for steps other modules add)."""
    return dsl.component(body, base_image=image, install_kfp_package=False)


@dataclass(frozen=True)
class BatchScoringComponents:
    """The batch scoring pipeline's components, built for one image."""

    image: str
    batch_score: Any
    batch_drift: Any


def build_batch_components(image: str | None = None) -> BatchScoringComponents:
    image = image or default_image()
    return BatchScoringComponents(
        image=image,
        batch_score=component(batch_score, image),
        batch_drift=component(batch_drift, image),
    )


@dataclass(frozen=True)
class MaterializationComponents:
    """The feature materialization pipeline's component, built for one image."""

    image: str
    materialize_features: Any


def build_materialization_components(image: str | None = None) -> MaterializationComponents:
    image = image or default_image()
    return MaterializationComponents(
        image=image, materialize_features=component(materialize_features, image)
    )


def build_components(image: str | None = None) -> TrainingComponents:
    image = image or default_image()
    return TrainingComponents(
        image=image, **{name: component(body, image) for name, body in _BODIES.items()}
    )
