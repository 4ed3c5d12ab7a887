"""The user's path through the KFP API on the cluster (no browser): upload, create a run as the UI's
"Create run" does (the uploaded version, default parameters), `make run`, a recurring run, and a
step that fails on broken data.

Every run's state comes from the KFP API; the registered model is read back from the cluster's
object store. Each step's wall time on the cluster is printed at the end of the session.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import yaml

from tests.kfp.kfp_cluster import FACTS, KfpCluster, port_forward
from tests.kfp.kfp_stack import ROOT

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

PACKAGE = ROOT / "pipelines" / "training.yaml"
PIPELINE = "churn-training"
REGISTRY = "s3://mlpipeline/registry"
RUN_TIMEOUT = 2400


def root_inputs() -> dict[str, Any]:
    spec = next(d for d in yaml.safe_load_all(PACKAGE.read_text()) if d and "root" in d)
    return spec["root"]["inputDefinitions"]["parameters"]


def required_arguments() -> dict[str, Any]:
    """What the UI's form makes the user fill: the parameters without a default."""
    required = {name for name, p in root_inputs().items() if "defaultValue" not in p}
    values = {"registry_uri": REGISTRY}
    assert required <= set(values), (
        f"parameters without a default the test does not know: {required}"
    )
    return {name: values[name] for name in required}


@pytest.fixture(scope="module")
def client(kfp_cluster: KfpCluster) -> Any:
    import kfp

    return kfp.Client(host=kfp_cluster.host)


@pytest.fixture(scope="module")
def uploaded(kfp_cluster: KfpCluster) -> tuple[str, str]:
    first = kfp_cluster.make("make upload", "upload")
    again = kfp_cluster.make("make upload (unchanged YAML)", "upload")
    ids = re.search(r"pipeline (\S+) version (\S+)", first)
    assert ids, first
    assert re.search(r"pipeline (\S+) version (\S+)", again).groups() == ids.groups()
    return ids.group(1), ids.group(2)


def wait_for_run(client: Any, run_id: str, label: str) -> Any:
    start = time.monotonic()
    run = client.wait_for_run_completion(run_id, timeout=RUN_TIMEOUT, sleep_duration=10)
    FACTS[f"run {label}: wall time"] = f"{time.monotonic() - start:.0f} s ({run.state})"
    for task in run.run_details.task_details or []:
        if task.start_time and task.end_time and task.display_name:
            took = (task.end_time - task.start_time).total_seconds()
            FACTS[f"run {label}: step {task.display_name}"] = f"{took:.0f} s ({task.state})"
    return run


def tasks_by_name(run: Any) -> dict[str, Any]:
    return {t.display_name: t for t in run.run_details.task_details or []}


def test_make_upload_registers_the_pipeline_and_its_version(
    uploaded: tuple[str, str], client: Any
) -> None:
    pipeline_id, version_id = uploaded
    assert client.get_pipeline_id(PIPELINE) == pipeline_id
    versions = client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions
    assert version_id in {v.pipeline_version_id for v in versions}


def test_a_run_with_the_defaults_trains_registers_and_deploys(
    uploaded: tuple[str, str], client: Any, kfp_cluster: KfpCluster
) -> None:
    pipeline_id, version_id = uploaded
    experiment = client.create_experiment("kfp-tests")
    run = client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name="defaults",
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=required_arguments(),
    )
    done = wait_for_run(client, run.run_id, "defaults")
    assert done.state == "SUCCEEDED", json.dumps(
        {n: t.state for n, t in tasks_by_name(done).items()}, indent=1
    )
    assert registered_versions(kfp_cluster), f"no model registered under {REGISTRY}"
    if root_inputs()["deploy"].get("defaultValue"):
        isvc = kfp_cluster.kubectl(
            "get", "inferenceservice", "-n", "mlops", "-o", "name", check=False
        )
        assert "inferenceservice" in isvc.stdout, isvc.stderr


def registered_versions(cluster: KfpCluster) -> list[str]:
    """Keys under the registry prefix in the cluster's object store, read with KFP's own credentials."""
    import base64

    import s3fs

    secret = json.loads(
        cluster.kubectl(
            "get", "secret", "mlpipeline-minio-artifact", "-n", "kubeflow", "-o", "json"
        ).stdout
    )
    key, secret_key = (
        base64.b64decode(secret["data"][k]).decode() for k in ("accesskey", "secretkey")
    )
    service = json.loads(
        cluster.kubectl("get", "svc", "seaweedfs", "-n", "kubeflow", "-o", "json").stdout
    )
    s3_port = next(
        p["port"]
        for p in service["spec"]["ports"]
        if p.get("name") in ("s3", "http-s3") or p["port"] == 9000
    )
    with port_forward(cluster.context, "kubeflow", "svc/seaweedfs", s3_port) as port:
        fs = s3fs.S3FileSystem(
            key=key, secret=secret_key, client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"}
        )
        return fs.find(REGISTRY.removeprefix("s3://"))


def test_make_run_submits_and_the_run_succeeds(kfp_cluster: KfpCluster, client: Any) -> None:
    out = kfp_cluster.make("make run", "run")
    run_id = re.search(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", out)
    assert run_id, out
    done = wait_for_run(client, run_id.group(1), "make run")
    assert done.state == "SUCCEEDED"


def test_a_recurring_run_fires(uploaded: tuple[str, str], client: Any) -> None:
    pipeline_id, version_id = uploaded
    experiment = client.create_experiment("kfp-tests")
    job = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name="every-minute",
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=required_arguments() | {"rows": 2000},
        cron_expression="0 * * * * *",
        max_concurrency=1,
        enabled=True,
    )
    try:
        deadline = time.monotonic() + 240
        fired: list[Any] = []
        while time.monotonic() < deadline and not fired:
            runs = (
                client.list_runs(experiment_id=experiment.experiment_id, page_size=100).runs or []
            )
            fired = [r for r in runs if r.recurring_run_id == job.recurring_run_id]
            time.sleep(10)
        assert fired, "the recurring run started no run within 4 minutes"
    finally:
        client.disable_recurring_run(job.recurring_run_id)
        client.delete_recurring_run(job.recurring_run_id)


def test_broken_data_fails_at_the_validate_step(uploaded: tuple[str, str], client: Any) -> None:
    pipeline_id, version_id = uploaded
    experiment = client.create_experiment("kfp-tests")
    run = client.run_pipeline(
        experiment_id=experiment.experiment_id,
        job_name="broken-data",
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=required_arguments() | {"scenario": "broken", "seed": 2},
    )
    done = wait_for_run(client, run.run_id, "broken data")
    assert done.state == "FAILED"
    assert tasks_by_name(done)["validate"].state == "FAILED"
    assert "train" not in tasks_by_name(done) or tasks_by_name(done)["train"].state != "SUCCEEDED"
