"""The training pipeline: ingest -> validate -> train -> evaluate -> gate -> register.

Parameters: `registry_uri` (required), `model_name`, and every field of `TrainingParams` and
`DeployParams` in pipelines/params.py, which declares each one's type, default and meaning once;
the signature below is generated from them. The deploy step creates the model's InferenceService (named model_name) at
100%, or rolls a new champion out as a canary at canary_percent; off by default (local runs),
`mlops pipeline submit` turns it on.

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
from pipelines.params import pipeline_signature

PIPELINE_NAME = "churn-training"
GOLDEN_YAML = Path(__file__).with_name("training.yaml")
SIGNATURE = pipeline_signature()


@dataclass(frozen=True)
class ObjectStore:
    """The S3-compatible store an s3:// registry lives in (on kind: KFP's own, in `kubeflow`)."""

    endpoint_url: str = "http://seaweedfs.kubeflow:9000"
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

    def training_pipeline(*values: Any) -> str:
        # KFP calls this positionally, in the order of the signature that pipelines/params.py
        # generates from the declared parameters (set as `__signature__` below).
        p = SIGNATURE.bind(*values).arguments
        registry_uri, model_name = p["registry_uri"], p["model_name"]
        ingest = c.ingest(
            data_source=p["data_source"],
            target=p["target"],
            schema_uri=p["schema_uri"],
            scenario=p["scenario"],
            rows=p["rows"],
            seed=p["seed"],
            holdout_fraction=p["holdout_fraction"],
            task=p["task"],
            positive_class=p["positive_class"],
        )
        validate = c.validate(
            train=ingest.outputs["train"],
            holdout=ingest.outputs["holdout"],
            schema=ingest.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            fail_on_drift=p["fail_on_drift"],
        )
        train = c.train(
            train_data=ingest.outputs["train"],
            schema=ingest.outputs["schema"],
            estimator=p["estimator"],
            seed=p["seed"],
        ).after(validate)
        evaluate = c.evaluate(
            model=train.outputs["model"],
            holdout=ingest.outputs["holdout"],
            schema=ingest.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            threshold=p["threshold"],
            slice_column=p["slice_column"],
            primary_metric=p["primary_metric"],
            max_regression=p["max_regression"],
            invariance_tolerance=p["invariance_tolerance"],
        )
        gate = c.gate(
            evaluation=evaluate.outputs["evaluation"],
            primary_metric=p["primary_metric"],
            margin=p["margin"],
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
            enabled=p["deploy"],
            serving_image=p["serving_image"],
            namespace=p["namespace"],
            service_name=model_name,
            canary_percent=p["canary_percent"],
        )
        if object_store is not None:
            for task in (ingest, validate, train, evaluate, gate, register):
                object_store.attach(task)
        return register.outputs["Output"]

    training_pipeline.__signature__ = SIGNATURE  # type: ignore[attr-defined]
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="ingest -> validate -> train -> evaluate -> gate -> register",
    )(training_pipeline)


def compile_pipeline(path: str | Path = GOLDEN_YAML, image: str | None = None) -> Path:
    """Write the pipeline's IR YAML for `image` (default: the release's component image)."""
    path = Path(path)
    compiler.Compiler().compile(build_training_pipeline(image), package_path=str(path))
    return path
