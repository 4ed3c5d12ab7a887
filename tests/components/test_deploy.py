"""The deploy step's decisions that need no API server; creating and canarying an
InferenceService against a real kube-apiserver is in tests/apiserver/test_apiserver_deploy.py."""

from __future__ import annotations

import pytest
from kubernetes import client

from components.deploy import DeployError, deploy_model, deploy_step
from components.inference_service import InferenceServiceSpec

RESULT = {
    "promoted": True,
    "version": 3,
    "model": "churn",
    "uri": "s3://mlpipeline/registry/churn/versions/3",
}
# An API server address where nothing listens: any call through it would fail loudly.
UNREACHABLE = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))


def step(**overrides):
    values = dict(
        register_result=RESULT,
        enabled=True,
        serving_image="mlops-platform/serving:abc",
        namespace="mlops",
        service_name="churn",
        canary_percent=10,
        feature_server_url="",
        api_client=UNREACHABLE,
    )
    return deploy_step(**(values | overrides))


def test_disabled_deploy_is_skipped_without_touching_the_cluster() -> None:
    out = step(enabled=False)
    assert out["action"] == "skipped" and "deploy=False" in out["reason"]


def test_a_version_that_failed_the_gate_is_not_deployed() -> None:
    out = step(register_result=RESULT | {"promoted": False})
    assert out["action"] == "skipped" and "did not pass the gate" in out["reason"]


def test_missing_serving_image_is_named() -> None:
    with pytest.raises(DeployError, match="serving_image is empty"):
        step(serving_image="")


def test_unreachable_api_server_is_a_deploy_error() -> None:
    with pytest.raises(DeployError, match="cannot read InferenceService mlops/churn"):
        step()


def test_canary_percent_must_leave_traffic_on_both_sides() -> None:
    spec = InferenceServiceSpec(
        name="churn",
        namespace="mlops",
        image="i:1",
        storage_uri=RESULT["uri"],
        model_name="churn",
        model_version="3",
    )
    with pytest.raises(DeployError, match="between 1 and 99"):
        deploy_model(spec, api_client=UNREACHABLE, canary_percent=100)


def test_a_skipped_deploy_never_loads_the_kubernetes_client() -> None:
    """A local run's deploy step is skipped: importing the step and skipping it costs no
    Kubernetes client import (~0.4 s, paid by every local run's fork server before)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from components.deploy import deploy_step\n"
        f"r = deploy_step(register_result={RESULT!r}, enabled=False, serving_image='', "
        "namespace='mlops', service_name='churn', canary_percent=10, feature_server_url='')\n"
        "assert r['action'] == 'skipped', r\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
