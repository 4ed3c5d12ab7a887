"""Submit the training pipeline to a Kubeflow Pipelines API (`make run`, `mlops pipeline submit`).

The pipeline is compiled for the given component image, with the object store's credentials
attached to every step (an s3:// registry in KFP's own store), and run with the deploy step on, so
a promoted model ends up served by KServe.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_core.errors import MlopsError
from pipelines.params import DeployParams, default
from pipelines.training import ObjectStore, build_training_pipeline

EXPERIMENT = "churn-training"


class SubmitError(MlopsError):
    """The KFP API could not be reached or refused the run."""


@dataclass(frozen=True, kw_only=True)
class Submission:
    host: str
    component_image: str
    serving_image: str
    registry_uri: str = ObjectStore().registry_uri
    namespace: str = default(DeployParams, "namespace")
    ui_url: str = "http://localhost:8888"
    arguments: dict[str, Any] = field(default_factory=dict)
    object_store: ObjectStore = field(default_factory=ObjectStore)


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    package: str


def submit_training(sub: Submission, client: Any = None) -> SubmittedRun:
    """Compile for `sub.component_image` and create a run; `client` is a `kfp.Client` (injectable)."""
    import kfp
    from kfp import compiler

    if not sub.component_image or not sub.serving_image:
        raise SubmitError("both the component image and the serving image are required")
    package = Path(tempfile.mkdtemp(prefix="mlops-submit-")) / "training.yaml"
    compiler.Compiler().compile(
        build_training_pipeline(sub.component_image, object_store=sub.object_store),
        package_path=str(package),
    )
    arguments = {
        "registry_uri": sub.registry_uri,
        "deploy": True,
        "serving_image": sub.serving_image,
        "namespace": sub.namespace,
    } | sub.arguments
    try:
        kfp_client = client or kfp.Client(host=sub.host)
        run = kfp_client.create_run_from_pipeline_package(
            str(package), arguments=arguments, experiment_name=EXPERIMENT
        )
    except Exception as e:  # kfp raises urllib3/ApiException/ConnectionError variants
        raise SubmitError(
            f"cannot submit to the KFP API at {sub.host}: {e}. Is it port-forwarded? "
            "kubectl port-forward -n kubeflow svc/ml-pipeline 8887:8888"
        ) from e
    return SubmittedRun(
        run_id=run.run_id,
        url=f"{sub.ui_url.rstrip('/')}/#/runs/details/{run.run_id}",
        package=str(package),
    )
