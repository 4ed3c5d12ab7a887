"""The training pipeline: ingest -> validate -> require-valid-data -> train -> evaluate -> gate ->
register -> deploy.

Parameters: `registry_uri`, `model_name`, and every field of `TrainingParams` and `DeployParams` in
pipelines/params.py, which declares each one's type, default and meaning once; the signature below
is generated from them. The deploy step creates the model's InferenceService (named model_name) at
100%, or rolls a new champion out as a canary at canary_percent.

`build_training_pipeline(image)` is the local form (kfp.local): registry_uri required, deploy off.
`build_training_pipeline(image, object_store=ObjectStore(...), defaults=...)` is the cluster form:
every step that touches the registry gets the object store's credentials (a Kubernetes secret)
and endpoint, for an s3:// registry. The validate step writes its report (Markdown, shown by the
KFP UI) and never fails on bad data; `require-valid-data` fails the run after it, because KFP
keeps no outputs of a failed task.

`compile_pipeline` writes the cluster form, whose every default runs as is on the `make deploy`
cluster (`cluster_defaults`): the golden `pipelines/training.yaml` that users upload in the KFP UI
(`make upload`) and `mlops monitor schedule` submits. The images are compile-time arguments.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components.dask_kubecluster import IMAGE_ENV as DASK_IMAGE_ENV
from components.dask_kubecluster import STORE_SECRET_ENV as DASK_STORE_SECRET_ENV
from components.kfp_components import (
    TrainingComponents,
    build_components,
    default_image,
    default_serving_image,
)
from pipelines.params import pipeline_signature

PIPELINE_NAME = "churn-training"
GOLDEN_YAML = Path(__file__).with_name("training.yaml")
SIGNATURE = pipeline_signature()


@dataclass(frozen=True)
class ObjectStore:
    """The S3-compatible store an s3:// registry lives in (on kind: KFP's own, in `kubeflow`).

    Each default is a name in KFP's manifests at KFP_VERSION (the SeaweedFS Service and Secret,
    pipeline-install-config's bucketName), pinned by tests/kfp/test_kfp_render.py.
    """

    endpoint_url: str = "http://seaweedfs.kubeflow:9000"
    secret_name: str = "mlpipeline-minio-artifact"
    access_key_field: str = "accesskey"
    secret_key_field: str = "secretkey"
    bucket: str = "mlpipeline"
    registry_prefix: str = "registry"

    @property
    def registry_uri(self) -> str:
        return f"s3://{self.bucket}/{self.registry_prefix}"

    @property
    def dask_secret(self) -> str:
        """The Secret and its key fields for compute=dask's workers (components.dask_kubecluster)."""
        return f"{self.secret_name}/{self.access_key_field}/{self.secret_key_field}"

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


def cluster_defaults(
    object_store: ObjectStore | None = None, serving_image: str | None = None
) -> dict[str, Any]:
    """The defaults that make a run with no edits work on the `make deploy` cluster: the registry
    in KFP's object store, and the deploy step on, serving the image `make kind-load` loads."""
    store = object_store or ObjectStore()
    return {
        "registry_uri": store.registry_uri,
        "deploy": True,
        "serving_image": serving_image or default_serving_image(),
    }


def build_training_pipeline(
    image: str | None = None,
    object_store: ObjectStore | None = None,
    defaults: dict[str, Any] | None = None,
    name: str = PIPELINE_NAME,
) -> Any:
    """The @dsl.pipeline for one component image (`defaults`: see `pipeline_signature`); `name`
    names its runs (a local run passes `<model>-training`)."""
    c: TrainingComponents = build_components(image or default_image())
    signature = pipeline_signature(defaults) if defaults else SIGNATURE

    def training_pipeline(*values: Any) -> str:
        # KFP calls this positionally, in the order of the signature that pipelines/params.py
        # generates from the declared parameters (set as `__signature__` below).
        p = signature.bind(*values).arguments
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
            drop_columns=p["drop_columns"],
            max_categories=p["max_categories"],
            estimator=p["estimator"],
            feature_store=p["feature_store"],
        )
        validate = c.validate(
            train=ingest.outputs["train"],
            holdout=ingest.outputs["holdout"],
            schema=ingest.outputs["schema"],
            registry_uri=registry_uri,
            model_name=model_name,
            fail_on_drift=p["fail_on_drift"],
            leakage_threshold=p["leakage_threshold"],
            fail_on_leakage=p["fail_on_leakage"],
        )
        valid = c.require_valid_data(
            summary=validate.outputs["summary"], report=validate.outputs["report"]
        )
        train = c.train(
            train_data=ingest.outputs["train"],
            schema=ingest.outputs["schema"],
            estimator=p["estimator"],
            seed=p["seed"],
            compute=p["compute"],
            dask_workers=p["dask_workers"],
            dask_worker_memory=p["dask_worker_memory"],
            dask_worker_cpu=p["dask_worker_cpu"],
        ).after(valid)
        # compute=dask on a cluster: the workers run this same component image.
        train.set_env_variable(DASK_IMAGE_ENV, c.image)
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
        deploy = c.deploy(
            register_result=register.outputs["Output"],
            enabled=p["deploy"],
            serving_image=p["serving_image"],
            namespace=p["namespace"],
            service_name=model_name,
            canary_percent=p["canary_percent"],
            feature_server_url=p["feature_server_url"],
        )
        # No step is cached: each reads what can change between two runs with the same
        # arguments (the file at the data URL, the registry's champion, the InferenceService), and
        # register and deploy act. A cached gate would compare with a champion that is gone; a
        # cached deploy after an undeploy or a rollback would deploy nothing.
        for task in (ingest, validate, valid, train, evaluate, gate, register, deploy):
            task.set_caching_options(False)
        if object_store is not None:
            for task in (ingest, validate, train, evaluate, gate, register):
                object_store.attach(task)
            train.set_env_variable(DASK_STORE_SECRET_ENV, object_store.dask_secret)
        return register.outputs["Output"]

    # Functions have no declared __signature__; inspect (and so dsl.pipeline) reads this one.
    training_pipeline.__signature__ = signature  # type: ignore[attr-defined]
    return dsl.pipeline(
        name=name,
        description="ingest -> validate -> train -> evaluate -> gate -> register -> deploy",
    )(training_pipeline)


def compile_pipeline(
    path: str | Path = GOLDEN_YAML, image: str | None = None, serving_image: str | None = None
) -> Path:
    """Write the cluster form's IR YAML for `image` (default: the release's component image)."""
    path = Path(path)
    store = ObjectStore()
    pipeline = build_training_pipeline(
        image, object_store=store, defaults=cluster_defaults(store, serving_image)
    )
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return path
