"""The pipeline's deploy step (components/deploy.py) against a real kube-apiserver, run as the deploy
step's ServiceAccount from the manifests (so RBAC is exercised), with the KServe controller's status
writes simulated through the status subresource."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from components.deploy import DeployError, deploy_model, deploy_step, wait_until_ready
from components.inference_service import (
    GROUP,
    MODEL_VERSION_ANNOTATION,
    PLURAL,
    VERSION,
    InferenceServiceSpec,
    build_inference_service,
    storage_uri_of,
)
from tests.apiserver.control_plane import service_account_api
from tests.apiserver.kserve_controller_status import serverless_status, write_status

pytestmark = pytest.mark.apiserver


def _spec(name: str, namespace: str, version: str) -> InferenceServiceSpec:
    return InferenceServiceSpec(
        name=name,
        namespace=namespace,
        image="mlops-platform/serving:test",
        storage_uri=f"s3://mlops/models/churn/{version}",
        model_name="churn",
        model_version=version,
    )


def _read(api: client.ApiClient, name: str, namespace: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


@pytest.fixture
def isvc_name() -> str:
    return f"churn-{uuid.uuid4().hex[:8]}"


def test_first_version_is_created_at_full_traffic(deployer_api, admin_api, project_base, isvc_name):
    spec = _spec(isvc_name, project_base, "v1")
    result = deploy_model(spec, api_client=deployer_api)

    assert result.action == "created"
    assert result.canary_traffic_percent is None
    stored = _read(admin_api, isvc_name, project_base)
    # Nothing was pruned by the CRD's schema: the stored spec is exactly the built one.
    assert stored["spec"] == build_inference_service(spec)["spec"]
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "v1"
    assert stored["metadata"]["generation"] == 1


def test_new_champion_goes_out_as_canary_and_rerun_changes_nothing(
    deployer_api, admin_api, project_base, isvc_name
):
    deploy_model(_spec(isvc_name, project_base, "v1"), api_client=deployer_api)
    result = deploy_model(
        _spec(isvc_name, project_base, "v2"), api_client=deployer_api, canary_percent=20
    )

    assert result.action == "canary"
    assert result.canary_traffic_percent == 20
    assert result.previous_storage_uri == "s3://mlops/models/churn/v1"
    stored = _read(admin_api, isvc_name, project_base)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert storage_uri_of(stored) == "s3://mlops/models/churn/v2"
    assert stored["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "v2"
    assert stored["metadata"]["generation"] == 2

    again = deploy_model(_spec(isvc_name, project_base, "v2"), api_client=deployer_api)
    assert again.action == "unchanged"
    assert again.canary_traffic_percent == 20
    assert _read(admin_api, isvc_name, project_base)["metadata"]["generation"] == 2


def test_update_keeps_what_other_writers_set_outside_the_spec(
    deployer_api, admin_api, project_base, isvc_name
):
    """The update is a merge patch, so it cannot fail on a stale resourceVersion, and it keeps
    metadata other writers added (here a label) and the controller's status."""
    deploy_model(_spec(isvc_name, project_base, "v1"), api_client=deployer_api)
    api = client.CustomObjectsApi(admin_api)
    stale = _read(admin_api, isvc_name, project_base)
    write_status(
        admin_api,
        isvc_name,
        project_base,
        serverless_status(
            isvc_name,
            project_base,
            generation=1,
            latest_revision=f"{isvc_name}-predictor-00001",
            previous_revision=None,
            latest_percent=100,
        ),
    )
    api.patch_namespaced_custom_object(
        GROUP, VERSION, project_base, PLURAL, isvc_name, {"metadata": {"labels": {"team": "risk"}}}
    )

    deploy_model(_spec(isvc_name, project_base, "v2"), api_client=deployer_api)

    stored = _read(admin_api, isvc_name, project_base)
    assert stored["metadata"]["labels"]["team"] == "risk"
    assert stored["status"]["components"]["predictor"]["latestReadyRevision"].endswith("00001")
    # A writer still holding the old resourceVersion is refused with a conflict, not merged.
    stale["spec"]["predictor"]["minReplicas"] = 3
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_custom_object(GROUP, VERSION, project_base, PLURAL, isvc_name, stale)
    assert conflict.value.status == 409


def test_wait_until_ready_reads_the_controllers_status(
    deployer_api, admin_api, project_base, isvc_name
):
    deploy_model(_spec(isvc_name, project_base, "v1"), api_client=deployer_api)
    revision = f"{isvc_name}-predictor-00001"
    write_status(
        admin_api,
        isvc_name,
        project_base,
        serverless_status(
            isvc_name,
            project_base,
            generation=1,
            latest_revision=revision,
            previous_revision=None,
            latest_percent=100,
            ready=False,
            reason="RevisionMissing",
        ),
    )
    with pytest.raises(DeployError, match=r"not Ready.*RevisionMissing"):
        wait_until_ready(
            isvc_name, project_base, api_client=deployer_api, timeout_s=0.5, poll_s=0.1
        )

    write_status(
        admin_api,
        isvc_name,
        project_base,
        serverless_status(
            isvc_name,
            project_base,
            generation=1,
            latest_revision=revision,
            previous_revision=None,
            latest_percent=100,
        ),
    )
    status = wait_until_ready(
        isvc_name, project_base, api_client=deployer_api, timeout_s=5, poll_s=0.1
    )
    assert status["components"]["predictor"]["traffic"] == [
        {"revisionName": revision, "percent": 100, "latestRevision": True}
    ]
    # The status write went through the subresource: the spec's generation did not move.
    assert _read(admin_api, isvc_name, project_base)["metadata"]["generation"] == 1


def test_deploy_step_cannot_write_outside_its_namespace(deployer_api, namespace):
    with pytest.raises(DeployError, match="403"):
        deploy_model(_spec("churn", namespace, "v1"), api_client=deployer_api)


@pytest.fixture(scope="module")
def pipeline_runner_api(control_plane, admin_api, project_base) -> client.ApiClient:
    """KFP runs every step as kubeflow/pipeline-runner (created by KFP's install; created here),
    which the manifests bind to the deployer Role in the project namespace."""
    core = client.CoreV1Api(admin_api)
    try:
        core.create_namespace(client.V1Namespace(metadata={"name": "kubeflow"}))
    except ApiException as exc:
        if exc.status != 409:  # already there (an overlay test may have created it)
            raise
    core.create_namespaced_service_account(
        "kubeflow", client.V1ServiceAccount(metadata={"name": "pipeline-runner"})
    )
    return service_account_api(control_plane, admin_api, "kubeflow", "pipeline-runner")


def test_pipeline_step_deploys_then_canaries_as_kfps_service_account(
    pipeline_runner_api, admin_api, project_base, isvc_name
):
    def run(version: int) -> dict:
        return deploy_step(
            register_result={
                "promoted": True,
                "version": version,
                "model": "churn",
                "uri": f"s3://mlpipeline/registry/churn/versions/{version}",
            },
            enabled=True,
            serving_image="mlops-platform/serving:test",
            namespace=project_base,
            service_name=isvc_name,
            canary_percent=10,
            feature_server_url="http://mlops-feature-server.mlops:6566",
            api_client=pipeline_runner_api,
        )

    assert run(1)["action"] == "created"
    second = run(2)
    assert (second["action"], second["canary_traffic_percent"]) == ("canary", 10)
    stored = _read(admin_api, isvc_name, project_base)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert storage_uri_of(stored) == "s3://mlpipeline/registry/churn/versions/2"
    # Requests by customer id: both versions' servers know the feature server.
    for predictor in (stored["spec"]["predictor"], *(stored["spec"].get("canary") or [])):
        env = {e["name"]: e.get("value") for e in predictor["containers"][0]["env"]}
        assert env["MLOPS_FEATURE_SERVER_URL"] == "http://mlops-feature-server.mlops:6566"


def test_pipeline_step_finds_credentials_from_kubeconfig(
    control_plane, admin_api, project_base, isvc_name
):
    """Outside a pod the step uses the current kubeconfig context (here the test admin's), in a
    process of its own as a user runs it: the kubernetes client reads KUBECONFIG at import."""
    code = (
        "import json, sys\n"
        "from components.deploy import deploy_step\n"
        "out = deploy_step(register_result={'promoted': True, 'version': 1, 'model': 'churn',"
        " 'uri': 's3://m/churn/1'}, enabled=True, serving_image='mlops-platform/serving:test',"
        f" namespace={project_base!r}, service_name={isvc_name!r}, canary_percent=10,"
        " feature_server_url='')\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["KUBECONFIG"] = str(control_plane.kubeconfig)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["action"] == "created"
    assert storage_uri_of(_read(admin_api, isvc_name, project_base)) == "s3://m/churn/1"
