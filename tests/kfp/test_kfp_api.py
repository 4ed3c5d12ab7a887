"""The user's path through KFP on the cluster: `make upload`; a run created in the KFP UI (headless
Chromium) with every parameter at its default, then what it did, read through the API and the
cluster; a recurring run made by `mlops monitor schedule`; and a run on broken data that fails with
the validation report kept as an artifact. (`make run` is the journey's: tests/kfp/test_journey.py.)
One run of the default pipeline serves the UI's checks and the API's: each takes minutes.

Every run's state comes from the KFP API; artifacts are found through MLMD (the cluster's server)
and read from the cluster's object store, where the registered model is read back too. Each
step's wall time on the cluster is printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from pipelines.training import ObjectStore
from tests.kfp.kfp_cluster import FACTS, KfpCluster, port_forward
from tests.kfp.kfp_stack import ROOT, run_hack

pytestmark = [pytest.mark.kfp, pytest.mark.slow]

PACKAGE = ROOT / "pipelines" / "training.yaml"
PIPELINE = "churn-training"
STORE = ObjectStore()
RUN_TIMEOUT = 2400
UI_OUT = ROOT / "build" / "kfp-ui"
TYPES = {"STRING": str, "BOOLEAN": bool, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}


def root_inputs() -> dict[str, Any]:
    spec = next(d for d in yaml.safe_load_all(PACKAGE.read_text()) if d and "root" in d)
    return spec["root"]["inputDefinitions"]["parameters"]


def ui_defaults() -> dict[str, Any]:
    """The parameters the UI's "Create run" sends when the user edits nothing: every default,
    typed as its convertInput does (KFP frontend src/lib/NewRunParametersUtils.ts, pinned by
    test_golden_on_kfp.py)."""
    inputs = root_inputs()
    missing = [n for n, p in inputs.items() if "defaultValue" not in p]
    assert not missing, f"the UI would make the user fill {missing}"
    return {n: TYPES[p["parameterType"]](p["defaultValue"]) for n, p in inputs.items()}


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


@pytest.fixture(scope="module")
def experiment_id(client: Any) -> str:
    return client.create_experiment("kfp-tests").experiment_id


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


def states(run: Any) -> str:
    return json.dumps({n: t.state for n, t in tasks_by_name(run).items()}, indent=1)


@contextlib.contextmanager
def object_store(cluster: KfpCluster) -> Iterator[Any]:
    """The cluster's object store through a port-forward, with the credentials KFP's steps use."""
    import base64

    import s3fs

    secret = json.loads(
        cluster.kubectl("get", "secret", STORE.secret_name, "-n", "kubeflow", "-o", "json").stdout
    )
    key, secret_key = (
        base64.b64decode(secret["data"][k]).decode()
        for k in (STORE.access_key_field, STORE.secret_key_field)
    )
    port = int(STORE.endpoint_url.rsplit(":", 1)[1])
    with port_forward(cluster.context, "kubeflow", "svc/seaweedfs", port) as local:
        # Its own instance, no listing cache: a listing from an earlier test is not the store.
        yield s3fs.S3FileSystem(
            key=key,
            secret=secret_key,
            client_kwargs={"endpoint_url": f"http://127.0.0.1:{local}"},
            skip_instance_cache=True,
            use_listings_cache=False,
        )


def remove_tree(fs: Any, path: str) -> None:
    """Every object under `path` ("bucket/key"), then its folders, checked gone. SeaweedFS (KFP's
    store) keeps a folder after its last object is deleted and lists it, so an emptied registry
    would still show its version folders as numbers taken; deleting a folder's own key
    ("key/") removes it."""
    if fs.exists(path):
        fs.rm(path, recursive=True)

    def folders(under: str) -> list[str]:  # deepest first
        try:
            entries = fs.ls(under, detail=True)
        except FileNotFoundError:
            return []
        subs = [e["name"] for e in entries if e["type"] == "directory"]
        return [f for sub in subs for f in (*folders(sub), sub)]

    bucket = path.split("/", 1)[0]
    for folder in (*folders(path), path):
        fs.call_s3("delete_object", Bucket=bucket, Key=folder.split("/", 1)[1] + "/")
    assert not fs.exists(path), f"{path} is still in the object store: {fs.ls(path)}"


# MLMD's own client, in the cluster's MLMD server pod (its image carries ml-metadata): each task's
# output artifacts in the run's context, as the UI finds them (KFP 2.17's run API leaves
# task_details[].outputs empty; the launcher records artifacts in MLMD only).
MLMD_OUTPUTS = r"""
import json, sys
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb
store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host="127.0.0.1", port=8080))
run = store.get_context_by_type_and_name("system.PipelineRun", sys.argv[1])
executions = store.get_executions_by_context(run.id)
events = [e for e in store.get_events_by_execution_ids([x.id for x in executions])
          if e.type == pb.Event.OUTPUT and e.path.steps]
artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
types = {t.id: t.name for t in store.get_artifact_types()}
tasks = {x.id: x.custom_properties["task_name"].string_value for x in executions}
out = {}
for e in events:
    a = artifacts[e.artifact_id]
    out.setdefault(tasks[e.execution_id], {})[e.path.steps[0].key] = [types[a.type_id], a.uri]
print(json.dumps(out))
"""


def run_outputs(cluster: KfpCluster, run_id: str) -> dict[str, dict[str, list[str]]]:
    """{task: {output: [artifact type, uri]}} of a run, from the cluster's MLMD server."""
    out = cluster.kubectl(
        "exec", "-n", "kubeflow", "deploy/metadata-grpc-deployment", "-c", "container", "--",
        "/opt/mlmd/bin/python", "-c", MLMD_OUTPUTS, run_id,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def read_artifact(cluster: KfpCluster, uri: str) -> str:
    # KFP names its store minio:// (pipeline root) or s3://; both are keys in the same bucket.
    path = re.sub(r"^(minio|s3)://", "", uri)
    with object_store(cluster) as fs:
        return fs.cat_file(path).decode()


def test_make_upload_registers_the_pipeline_and_its_version(
    uploaded: tuple[str, str], client: Any
) -> None:
    pipeline_id, version_id = uploaded
    assert client.get_pipeline_id(PIPELINE) == pipeline_id
    versions = client.list_pipeline_versions(pipeline_id, page_size=200).pipeline_versions
    assert version_id in {v.pipeline_version_id for v in versions}


@pytest.fixture(scope="module")
def ui_python() -> str:
    result = run_hack("browser (chromium, selenium)", ["bash", "hack/kfp/ensure-browser.sh"])
    if result.returncode == 3:
        pytest.skip(f"no headless Chromium and cannot install it here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_run_created_in_the_ui_with_the_defaults_trains_registers_and_deploys(
    client: Any, kfp_cluster: KfpCluster, ui_python: str
) -> None:
    """In the KFP UI (headless Chromium): upload pipelines/training.yaml, "Create run" with every
    parameter at its default, see it succeed with its metrics (ROC AUC, confusion matrix) and the
    validation report. Then, through the API and the cluster, what that run did: the model
    registered in the object store, the InferenceService serving it, its artifacts in MLMD. The
    run graph's screenshot is kept as build/kfp-ui/run-graph.png (the README shows a copy,
    docs/images/kfp-run-graph.png)."""
    with port_forward(kfp_cluster.context, "kubeflow", "svc/ml-pipeline-ui", 80) as port:
        result = subprocess.run(
            [ui_python, str(ROOT / "tests" / "kfp" / "ui_flow.py"), f"http://127.0.0.1:{port}",
             str(PACKAGE), str(UI_OUT)],
            capture_output=True, text=True, timeout=RUN_TIMEOUT,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    FACTS["UI run wall time (upload to done)"] = (
        f"{seen.get('run_seconds')} s ({seen.get('state')})"
    )
    done = wait_for_run(client, seen["run_id"], "defaults (created in the UI)")
    assert done.state == "SUCCEEDED", states(done)
    assert seen["state"] == "SUCCEEDED"
    # What the UI showed.
    assert (UI_OUT / "run-graph.png").stat().st_size > 10_000
    for step in ("ingest", "validate", "require-valid-data", "train", "evaluate", "deploy"):
        assert step in seen["graph_text"]
    shown = " ".join(seen["evaluate"].values()).lower()
    assert "roc_auc" in shown and "confusion" in shown, shown[:3000]
    report = seen["validate"]["report"]
    assert "Data validation report" in report and "Status: PASSED" in report, report[:3000]
    # What the run did, read from the cluster.
    defaults = ui_defaults()
    with object_store(kfp_cluster) as fs:
        registered = fs.find(defaults["registry_uri"].removeprefix("s3://"))
    assert any(k.endswith("model.skops") for k in registered), registered
    assert defaults["deploy"] is True
    isvc = kfp_cluster.kubectl(
        "get", "inferenceservice", defaults["model_name"], "-n", defaults["namespace"],
        "-o", "json",
    )  # fmt: skip
    container = json.loads(isvc.stdout)["spec"]["predictor"]["containers"][0]
    assert container["image"] == defaults["serving_image"]
    # The UI's panels come from these artifacts: the evaluate step's Metrics (ROC AUC) and
    # ClassificationMetrics (confusion matrix); the validate step's Markdown report.
    outputs = run_outputs(kfp_cluster, seen["run_id"])
    assert outputs["evaluate"]["metrics"][0] == "system.Metrics"
    assert outputs["evaluate"]["classification"][0] == "system.ClassificationMetrics"
    kind, uri = outputs["validate"]["report"]
    assert kind == "system.Markdown"
    assert "**Status: PASSED**" in read_artifact(kfp_cluster, uri)


def test_the_in_cluster_retraining_trigger_starts_a_run_through_the_api(
    kfp_cluster: KfpCluster, client: Any
) -> None:
    """The canary controller's Deployment (MLOPS_KFP_HOST: the cluster's KFP API) judges the model
    servers' drift gauges from Prometheus and starts the training pipeline through KFP's API."""
    from mlops_control.retraining.cluster_trigger import RETRAINING_ANNOTATION
    from serving.v1_instances import v1_instances
    from tests.drifted_traffic import churn_features, raise_charges
    from tests.kind.cluster_harness import gateway_client

    defaults = ui_defaults()
    name, namespace = defaults["model_name"], defaults["namespace"]
    # The defaults run's deploy step may have just created it (no earlier test left one).
    kfp_cluster.kubectl(
        "wait", "--for=condition=Ready", f"isvc/{name}", "-n", namespace, "--timeout=600s"
    )
    isvc = json.loads(
        kfp_cluster.kubectl("get", "isvc", name, "-n", namespace, "-o", "json").stdout
    )
    host = isvc["status"]["url"].split("://", 1)[1]
    before = {r.run_id for r in client.list_runs(page_size=200).runs or []}
    # Three drifting evaluations (one per 5 s at the servers' defaults) over 20 s.
    policy = {"min_evaluations": 3, "sustain_s": 20, "cooldown_s": 3600}
    kfp_cluster.kubectl(
        "annotate", "--overwrite", "isvc", name, "-n", namespace,
        f"{RETRAINING_ANNOTATION}={json.dumps(policy)}",
    )  # fmt: skip
    rows = v1_instances(raise_charges(churn_features(2000)))
    # Traefik routes a new InferenceService a moment after KServe reports it Ready (a 404 until).
    with gateway_client(host) as http:
        deadline = time.monotonic() + 120
        while (
            http.post(f"/v1/models/{name}:predict", json={"instances": rows[:1]}).status_code == 404
        ):
            assert time.monotonic() < deadline, "the gateway did not route the model in 120 s"
            time.sleep(1)
    started = time.monotonic()
    new: list[Any] = []
    try:
        with gateway_client(host) as http:
            i = 0
            while time.monotonic() - started < 600 and not new:
                batch = rows[(i * 100) % len(rows) :][:100]
                answer = http.post(f"/v1/models/{name}:predict", json={"instances": batch})
                assert answer.status_code == 200, answer.text
                i += 1
                if i % 20 == 0:
                    runs = client.list_runs(page_size=200).runs or []
                    # The trigger's runs only (retrain-<model>-trg-...), not another test's.
                    new = [
                        run
                        for run in runs
                        if run.run_id not in before
                        and (run.display_name or "").startswith("retrain-")
                    ]
                time.sleep(0.5)
        logs = kfp_cluster.kubectl(
            "logs", "-n", namespace, "deploy/mlops-canary-controller", "--tail=40", check=False
        ).stdout
        assert new, f"the controller started no run within 10 minutes of drifted traffic:\n{logs}"
        FACTS["retraining trigger: drifted traffic to a KFP run"] = (
            f"{time.monotonic() - started:.0f} s"
        )
        selector = f"reason=RetrainingTriggered,involvedObject.name={name}"
        # The Event is written just after the run starts: the run can be listed first.
        deadline, events = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            got = kfp_cluster.kubectl(
                "get", "events", "-n", namespace, "--field-selector", selector, "-o", "json"
            )  # fmt: skip
            events = json.loads(got.stdout)["items"]
            if events:
                break
            time.sleep(2)
        assert events, f"no RetrainingTriggered Event on the InferenceService; controller:\n{logs}"
        message = events[-1]["message"]
        assert any(f"KFP run {r.run_id} started" in message for r in new), message
    finally:
        kfp_cluster.kubectl(
            "annotate", "isvc", name, "-n", namespace, f"{RETRAINING_ANNOTATION}-", check=False
        )
        # The triggered run trains the golden pipeline like the defaults test: stop it here so it
        # does not hold the 2 cores for the next tests.
        for run in new:
            client.terminate_run(run.run_id)


def test_mlops_monitor_schedule_makes_a_recurring_run_that_fires(
    kfp_cluster: KfpCluster, client: Any
) -> None:
    name = f"kfp-test-{int(time.time())}"
    created = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "mlops"), "monitor", "schedule", "--cron", "0 * * * * *",
         "--data-source", "synthetic", "--kfp-host", kfp_cluster.host, "--name", name,
         "--registry", STORE.registry_uri, "--package", str(PACKAGE)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    job_id = re.search(r"recurring run (\S+) created", created.stdout).group(1)
    start = time.monotonic()
    fired: list[Any] = []
    try:
        while time.monotonic() - start < 240 and not fired:
            time.sleep(10)
            runs = client.list_runs(page_size=100, sort_by="created_at desc").runs or []
            fired = [r for r in runs if r.recurring_run_id == job_id]
        assert fired, "the recurring run started no run within 4 minutes"
        FACTS["recurring run: first run after"] = f"{time.monotonic() - start:.0f} s"
        # It runs the golden pipeline with the schedule's arguments; that pipeline's full run is
        # the defaults test's. Stop it here so it does not hold the 2 cores for the next tests.
        for run in fired:
            client.terminate_run(run.run_id)
    finally:
        client.disable_recurring_run(job_id)
        client.delete_recurring_run(job_id)


def test_broken_data_fails_the_run_and_keeps_the_validation_report(
    uploaded: tuple[str, str], client: Any, kfp_cluster: KfpCluster, experiment_id: str
) -> None:
    pipeline_id, version_id = uploaded
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name="broken-data",
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=ui_defaults() | {"scenario": "broken", "seed": 2},
    )
    done = wait_for_run(client, run.run_id, "broken data")
    assert done.state == "FAILED", states(done)
    tasks = tasks_by_name(done)
    assert tasks["require-valid-data"].state == "FAILED", states(done)
    assert "train" not in tasks or tasks["train"].state != "SUCCEEDED"
    # The report is the validate step's output (a failed KFP task keeps none of its outputs).
    assert tasks["validate"].state == "SUCCEEDED", states(done)
    kind, uri = run_outputs(kfp_cluster, run.run_id)["validate"]["report"]
    assert kind == "system.Markdown"
    report = read_artifact(kfp_cluster, uri)
    assert "**Status: FAILED**" in report
    assert "Failing columns: `tenure_months`, `monthly_charges`, `age`" in report
