"""Submit the training pipeline to a Kubeflow Pipelines API (`make run`, `mlops pipeline submit`).

The pipeline is compiled for the given component image, with the object store's credentials
attached to every step (an s3:// registry in KFP's own store), and run with the deploy step on, so
a promoted model ends up served by KServe.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.ingest import SYNTHETIC_SOURCE
from mlops_core.errors import MlopsError
from mlops_core.settings import DEFAULT_MODEL_NAME
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


def _refuse_local_path(name: str, uri: str) -> None:
    """A run on the cluster reads data from URLs (s3://, http://), never this machine's files."""
    if uri and uri != SYNTHETIC_SOURCE and "://" not in uri:
        raise SubmitError(
            f"{name} {uri!r} is a path on this machine, which the cluster cannot read; copy it "
            f"to the object store and pass its URL (e.g. s3://{ObjectStore().bucket}/data/...)"
        )


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    package: str


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    state: str  # KFP's V2beta1RuntimeState: SUCCEEDED, FAILED, CANCELED, ...
    seconds: float


def wait_for_run(
    run: SubmittedRun, *, host: str, timeout_s: float, client: Any = None
) -> FinishedRun:
    """Wait until the run ends; a run that does not succeed is a SubmitError naming its failed
    steps and its page in the UI."""
    import kfp

    start = time.monotonic()
    try:
        kfp_client = client or kfp.Client(host=host)
        done = kfp_client.wait_for_run_completion(
            run.run_id, timeout=int(timeout_s), sleep_duration=10
        )
    except TimeoutError as e:
        raise SubmitError(
            f"run {run.run_id} had not ended after {timeout_s:g} s; see {run.url}"
        ) from e
    except Exception as e:  # kfp raises urllib3/ApiException/ConnectionError variants
        raise SubmitError(f"cannot follow run {run.run_id} at the KFP API {host}: {e}") from e
    if done.state != "SUCCEEDED":
        tasks = (done.run_details.task_details or []) if done.run_details else []
        failed = sorted({t.display_name for t in tasks if t.state == "FAILED" and t.display_name})
        steps = f" (failed: {', '.join(failed)})" if failed else ""
        raise SubmitError(f"run {run.run_id} ended {done.state}{steps}; see {run.url}")
    return FinishedRun(run.run_id, str(done.state), time.monotonic() - start)


def submit_training(sub: Submission, client: Any = None) -> SubmittedRun:
    """Compile for `sub.component_image` and create a run; `client` is a `kfp.Client` (injectable)."""
    from kfp import compiler

    if not sub.component_image or not sub.serving_image:
        raise SubmitError("both the component image and the serving image are required")
    for name in ("data_source", "schema_uri"):
        _refuse_local_path(name, str(sub.arguments.get(name, "")))
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
    # Named after the model it trains, as a local run is: `cars-training 2026-12-06 10:41:14`.
    model = arguments.get("model_name") or DEFAULT_MODEL_NAME
    return create_run(
        package,
        host=sub.host,
        ui_url=sub.ui_url,
        arguments=arguments,
        run_name=f"{model}-training {time.strftime('%Y-%m-%d %H:%M:%S')}",
        experiment=EXPERIMENT,
        client=client,
    )


def create_run(
    package: Path,
    *,
    host: str,
    ui_url: str,
    arguments: dict[str, Any],
    run_name: str,
    experiment: str,
    client: Any = None,
) -> SubmittedRun:
    """One run of a compiled pipeline on the KFP API at `host`."""
    import kfp

    try:
        kfp_client = client or kfp.Client(host=host)
        run = kfp_client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name, experiment_name=experiment
        )
    except Exception as e:  # kfp raises urllib3/ApiException/ConnectionError variants
        raise SubmitError(
            f"cannot submit to the KFP API at {host}: {e}. Is it port-forwarded? "
            "kubectl port-forward -n kubeflow svc/ml-pipeline 8887:8888"
        ) from e
    return SubmittedRun(
        run_id=run.run_id,
        url=f"{ui_url.rstrip('/')}/#/runs/details/{run.run_id}",
        package=str(package),
    )
