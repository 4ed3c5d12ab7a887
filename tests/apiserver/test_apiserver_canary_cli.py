"""`mlops canary start|status|promote|rollback --target kubernetes` as a user runs them, with a
kubeconfig for the real test API server: the commands patch the InferenceService, record Events,
and refuse a wrong state with one red line."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from kubernetes import client

from components import isvc_traffic as patches
from components.deploy import deploy_model
from components.inference_service import GROUP, PLURAL, VERSION, InferenceServiceSpec
from mlops_control.traffic.model_server_process import mlops_executable
from mlops_core.registry import ModelRegistry
from mlops_demo.train_and_register import train_and_register

pytestmark = pytest.mark.apiserver
MODEL = "churn"


def test_canary_commands_drive_the_inference_service(
    control_plane, admin_api, project_base, tmp_path
):
    registry = ModelRegistry(str(tmp_path / "registry"))
    for seed in (1, 2):
        train_and_register(registry, MODEL, rows=500, seed=seed)
    name = f"churn-{uuid.uuid4().hex[:8]}"
    deploy_model(
        InferenceServiceSpec(
            name=name,
            namespace=project_base,
            image="mlops-platform/serving:test",
            storage_uri=registry.version_uri(MODEL, 1),
            model_name=MODEL,
            model_version="1",
        ),
        api_client=admin_api,
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "MLOPS_REGISTRY_URI": registry.uri,
        "MLOPS_NAMESPACE": project_base,
        "MLOPS_WORK_DIR": str(tmp_path / "work"),
        "COLUMNS": "400",  # one red line, unwrapped
    }
    common = ["--target", "kubernetes", "--model", MODEL, "--isvc", name]

    def mlops(*args: str, confirm: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--confirm-timeout", "0"] if confirm else []
        return subprocess.run(
            [*mlops_executable(), "canary", *args, *common, *extra],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def read() -> dict:
        return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
            GROUP, VERSION, project_base, PLURAL, name
        )

    started = mlops("start", "--version", "2")
    assert started.returncode == 0, started.stderr
    isvc = read()
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert patches.storage_uri_in(isvc["spec"]["predictor"]) == registry.version_uri(MODEL, 2)

    status = mlops("status", confirm=False)
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout[status.stdout.index("{") :])
    assert (shown["stable_version"], shown["canary_version"], shown["canary_percent"]) == (
        "1",
        "2",
        10,
    )

    # The same version again (the quick start's `make canary VERSION=2` after the deploy step
    # made v2 the canary): resumed as it is, nothing written.
    before = read()["metadata"]["resourceVersion"]
    again = mlops("start", "--version", "2")
    assert again.returncode == 0, again.stderr
    assert "canary v2 is already running at 10%" in again.stdout
    assert read()["metadata"]["resourceVersion"] == before
    other = mlops("start", "--version", "1")
    assert other.returncode == 2 and "already a canary at 10%" in other.stderr

    promoted = mlops("promote")
    assert promoted.returncode == 0, promoted.stderr
    isvc = read()
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"][patches.STABLE_VERSION] == "2"

    nothing = mlops("rollback")
    assert nothing.returncode == 2 and "no canary is in progress" in nothing.stderr

    events = client.CoreV1Api(admin_api).list_namespaced_event(
        project_base, field_selector=f"involvedObject.name={name}"
    )
    assert {"CanaryStarted", "CanaryPromoted"} <= {e.reason for e in events.items}
    last = json.loads(read()["metadata"]["annotations"][patches.LAST_DECISION])
    assert last == {"action": "promote", "manual": True}
