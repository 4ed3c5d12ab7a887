"""The training pipeline: ingest -> validate -> train -> evaluate -> gate -> register.

Parameters (all but `registry_uri` have defaults):

- data_source: "" or "synthetic" for the churn generator, else a CSV/Parquet file or folder on any
  fsspec path (`/data/x.csv`, `https://host/x.parquet`, `s3://bucket/prefix/`).
- target: the label column (0/1). schema_uri: a FeatureSchema JSON; empty = the generator's schema
  or one inferred from the data (saved as the ingest step's `schema` artifact).
- scenario, rows, seed: the generator's drift scenario, row count and seed (synthetic data only;
  seed also drives the train/holdout split and the estimator).
- holdout_fraction: share of rows held out for evaluation and the champion comparison.
- estimator: xgboost | hist_gradient_boosting | logistic_regression.
- primary_metric, margin: the gate promotes the candidate if its tests pass and it beats the
  champion on primary_metric by at least margin. max_regression: the differential test's tolerance.
- threshold, slice_column: accuracy threshold; per-slice metrics by this column's categories
  (empty: the schema's first categorical feature, `contract` for the churn data).
- invariance_tolerance: mean prediction shift allowed when an invariant feature changes.
- fail_on_drift: make drift against the champion's reference fatal (schema violations always are).
- registry_uri, model_name: where versions and the champion pointer live.
- deploy, serving_image, namespace, canary_percent: the last step creates the model's
  InferenceService (named model_name) at 100%, or rolls a new champion out as a canary at
  canary_percent; off by default (local runs), `mlops pipeline submit` turns it on.

On a cluster, `build_training_pipeline(image, object_store=ObjectStore(...))` gives every step the
object store's credentials (from a Kubernetes secret) and endpoint, for an s3:// registry.

The image is a compile-time argument: `build_training_pipeline(image)`; `compile_pipeline` writes
the IR YAML (`mlops pipeline compile`), and `pipelines/training.yaml` is the committed golden copy.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.kfp_components import TrainingComponents, build_components, default_image

PIPELINE_NAME = "churn-training"
GOLDEN_YAML = Path(__file__).with_name("training.yaml")


@dataclass(frozen=True)
class ObjectStore:
    """The S3-compatible store an s3:// registry lives in (on kind: KFP's own, in `kubeflow`)."""

    endpoint_url: str = "http://minio-service.kubeflow:9000"
    secret_name: str = "mlpipeline-minio-artifact"
    access_key_field: str = "accesskey"
    secret_key_field: str = "secretkey"

    def attach(self, task: Any) -> Any:
        from kfp import kubernetes

        kubernetes.use_secret_as_env(
            task,
            secret_name=self.secret_name,
            secret_key_to_env={
                self.access_key_field: "AWS_ACCESS_KEY_ID",
                self.secret_key_field: "AWS_SECRET_ACCESS_KEY",
            },
        )
        return task.set_env_variable("AWS_ENDPOINT_URL", self.endpoint_url)


def build_training_pipeline(
    image: str | None = None, object_store: ObjectStore | None = None
) -> Any:
    """The @dsl.pipeline for one component image."""
    c: TrainingComponents = build_components(image or default_image())

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="ingest -> validate -> train -> evaluate -> gate -> register",
    )
    def training_pipeline(
        registry_uri: str,
        data_source: str = "",
        target: str = "churned",
        schema_uri: str = "",
        scenario: str = "clean",
        rows: int = 20000,
        seed: int = 0,
        holdout_fraction: float = 0.2,
        estimator: str = "xgboost",
        primary_metric: str = "roc_auc",
        margin: float = 0.005,
        max_regression: float = 0.01,
        threshold: float = 0.5,
        slice_column: str = "",
        invariance_tolerance: float = 0.02,
        fail_on_drift: bool = False,
        model_name: str = "churn",
        deploy: bool = False,
        serving_image: str = "",
        namespace: str = "mlops",
        canary_percent: int = 10,
    ) -> str:
        ingest = c.ingest(
            data_source=data_source,
            target=target,
            schema_uri=schema_uri,
            scenario=scenario,
            rows=rows,
            seed=seed,
            holdout_fraction=holdout_fraction,
        )
        validate = c.validate(
            train=ingest.outputs["train"],
            holdout=ingest.outputs["holdout"],
            schema=ingest.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            fail_on_drift=fail_on_drift,
        )
        train = c.train(
            train_data=ingest.outputs["train"],
            schema=ingest.outputs["schema"],
            estimator=estimator,
            seed=seed,
        ).after(validate)
        evaluate = c.evaluate(
            model=train.outputs["model"],
            holdout=ingest.outputs["holdout"],
            schema=ingest.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            threshold=threshold,
            slice_column=slice_column,
            primary_metric=primary_metric,
            max_regression=max_regression,
            invariance_tolerance=invariance_tolerance,
        )
        gate = c.gate(
            evaluation=evaluate.outputs["evaluation"],
            primary_metric=primary_metric,
            margin=margin,
        )
        register = c.register(
            model=train.outputs["model"],
            schema=ingest.outputs["schema"],
            reference=train.outputs["reference"],
            evaluation=evaluate.outputs["evaluation"],
            decision=gate.outputs["decision"],
            ingest_summary=ingest.outputs["summary"],
            train_summary=train.outputs["summary"],
            registry_uri=registry_uri,
            model_name=model_name,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        )
        c.deploy(
            register_result=register.outputs["Output"],
            enabled=deploy,
            serving_image=serving_image,
            namespace=namespace,
            service_name=model_name,
            canary_percent=canary_percent,
        )
        if object_store is not None:
            for task in (ingest, validate, train, evaluate, gate, register):
                object_store.attach(task)
        return register.outputs["Output"]

    return training_pipeline


def compile_pipeline(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    """Write the pipeline's IR YAML for `image` (default: the release's component image)."""
    path = Path(path)
    compiler.Compiler().compile(build_training_pipeline(image), package_path=str(path))
    return path
