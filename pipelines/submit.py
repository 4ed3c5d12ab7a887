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
    registry_uri: str = "s3://mlpipeline/registry"
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


@dataclass(frozen=True)
class Upload:
    pipeline_id: str
    version: str
    action: str  # "created" | "new version" | "unchanged"


def upload_golden(host: str, package: Path | None = None, client: Any = None) -> Upload:
    """Register the committed pipeline YAML in KFP (`make upload`), so it appears in the UI: the
    pipeline on first use, then a new version whenever the YAML changes. A version is named by the
    YAML's digest, so uploading the same file again changes nothing."""
    import hashlib

    from pipelines.training import GOLDEN_YAML, PIPELINE_NAME

    package = package or GOLDEN_YAML
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:12]
    version = f"{PIPELINE_NAME}-{digest}"
    try:
        if client is None:
            import kfp

            client = kfp.Client(host=host)
        pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
        if pipeline_id is None:
            created = client.upload_pipeline(
                str(package), pipeline_name=PIPELINE_NAME, description=f"golden YAML {version}"
            )
            # The first version takes the pipeline's name; name one by the digest too.
            client.upload_pipeline_version(
                str(package), pipeline_version_name=version, pipeline_id=created.pipeline_id
            )
            return Upload(created.pipeline_id, version, "created")
        token = ""
        while True:
            page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100)
            if any(v.display_name == version for v in page.pipeline_versions or []):
                return Upload(pipeline_id, version, "unchanged")
            token = page.next_page_token or ""
            if not token:
                break
        client.upload_pipeline_version(
            str(package), pipeline_version_name=version, pipeline_id=pipeline_id
        )
        return Upload(pipeline_id, version, "new version")
    except MlopsError:
        raise
    except Exception as e:  # the kfp client raises transport and API errors of several kinds
        raise SubmitError(f"cannot upload the pipeline to KFP at {host}: {e}") from e
