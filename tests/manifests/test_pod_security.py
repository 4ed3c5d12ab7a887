"""The `mlops` namespace enforces the Pod Security Standard `restricted`, and every pod the project
makes there meets it, checked by the Kubernetes release's own Pod Security checks
(k8s.io/pod-security-admission at KUBERNETES_VERSION, built by hack/pod-security/build.sh): the
canary controller's and the dashboard's pod templates as rendered, and the model server pod as
KServe makes it from the builder's predictor, storage initializer included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.inference_service import (
    STORAGE_CONTAINER,
    InferenceServiceSpec,
    build_inference_service,
)
from tests.manifests.test_manifests import ROOT, by_kind, render
from tests.upstream import go_module_dir, kserve_file, pins

NAMESPACE = "mlops"
STORAGE = "pkg/webhook/admission/pod/storage_initializer_injector.go"


def _flat(go: str) -> str:
    return re.sub(r"\s+", " ", go)


def _minor() -> str:
    """v1.37 for KUBERNETES_VERSION v1.37.2: the release whose standard the namespace pins."""
    return ".".join(pins()["KUBERNETES_VERSION"].split(".")[:2])


@pytest.fixture(scope="module")
def objs() -> list[dict[str, Any]]:
    return render("dev")


@pytest.fixture(scope="module")
def checker() -> Path:
    if shutil.which("go") is None:
        pytest.skip("go is not installed: cannot build the Pod Security checks (hack/pod-security)")
    built = subprocess.run(
        ["bash", str(ROOT / "hack/pod-security/build.sh")], capture_output=True, text=True
    )
    if built.returncode != 0 and "proxy" in built.stderr.lower():
        pytest.skip(f"the Go module proxy is unreachable: {built.stderr.strip()[-200:]}")
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def failures(checker: Path, pods: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    body = [{"name": n, "metadata": {}, "spec": spec} for n, spec in pods.items()]
    done = subprocess.run(
        [str(checker), "restricted", _minor()],
        input=json.dumps(body),
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, list[dict[str, str]]] = json.loads(done.stdout)
    return result


def test_the_namespace_enforces_restricted_at_the_pinned_release(objs) -> None:
    psa = go_module_dir("k8s.io/pod-security-admission", "v0." + pins()["KUBERNETES_VERSION"][3:])
    constants = (psa / "api/constants.go").read_text()
    prefix = re.search(r'labelPrefix = "([^"]+)"', constants)
    assert prefix is not None
    assert 'LevelRestricted Level = "restricted"' in constants
    (ns,) = [o for o in by_kind(objs, "Namespace") if o["metadata"]["name"] == NAMESPACE]
    labels = ns["metadata"]["labels"]
    for mode in ("Enforce", "Warn", "Audit"):
        level = re.search(rf'{mode}LevelLabel\s+= labelPrefix \+ "([^"]+)"', constants)
        version = re.search(rf'{mode}VersionLabel\s+= labelPrefix \+ "([^"]+)"', constants)
        assert level and version, mode
        assert labels[prefix.group(1) + level.group(1)] == "restricted"
        assert labels[prefix.group(1) + version.group(1)] == _minor()


def test_the_projects_deployments_in_the_namespace_meet_restricted(objs, checker) -> None:
    pods = {
        f"{o['kind']}/{o['metadata']['name']}": o["spec"]["template"]["spec"]
        for o in objs
        if o["metadata"].get("namespace") == NAMESPACE and "template" in o.get("spec", {})
    }
    assert {"Deployment/mlops-canary-controller", "Deployment/mlops-dashboard"} <= set(pods)
    assert failures(checker, pods) == {name: [] for name in pods}


# --- the model server pod, as KServe makes it ---------------------------------------------------


def test_kserve_gives_the_storage_initializer_no_security_context_of_its_own() -> None:
    """So the project's ClusterStorageContainer supplies it, named by the predictor."""
    utils = kserve_file("pkg/utils/storage.go")
    make = utils[utils.index("func CreateInitContainerWithConfig") :]
    make = make[: make.index("\n}\n")]
    assert "Name:                     constants.StorageInitializerContainerName," in make
    assert "SecurityContext" not in make
    injector = _flat(kserve_file(STORAGE))
    assert (
        "merged, err := utils.MergeContainerWithPatch(*initContainer, "
        "params.StorageContainerSpec.Container)" in injector
    )
    assert "if name, ok := pod.Annotations[constants.StorageContainerNameAnnotationKey]; ok {" in (
        injector
    )
    predictor = _flat(
        kserve_file("pkg/controller/v1beta1/inferenceservice/components/predictor.go")
    )
    assert "annotations[constants.StorageContainerNameAnnotationKey] = *storageContainerName" in (
        predictor
    )
    spec = _flat(kserve_file("pkg/apis/serving/v1beta1/predictor.go"))
    assert 'StorageContainerName *string `json:"storageContainerName,omitempty"`' in spec


def _storage_container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (sc,) = by_kind(objs, "ClusterStorageContainer")
    assert sc["metadata"]["name"] == STORAGE_CONTAINER
    assert sc["spec"]["workloadType"] == "initContainer"
    assert {"prefix": "s3://"} in sc["spec"]["supportedUriFormats"]
    return sc


def model_pod(objs: list[dict[str, Any]], *, with_storage_container: bool) -> dict[str, Any]:
    """The predictor's pod spec with the init container KServe's webhook injects: made from
    inferenceservice-config's storageInitializer (CreateInitContainerWithConfig: name, image,
    args, resources) and, when the predictor names one, the ClusterStorageContainer's container
    merged over it; the model directory an emptyDir."""
    isvc = build_inference_service(
        InferenceServiceSpec(
            name="churn",
            namespace=NAMESPACE,
            image="mlops-platform/serving:test",
            storage_uri="s3://mlpipeline/registry/churn/versions/1",
            model_name="churn",
            model_version="1",
        )
    )
    predictor = isvc["spec"]["predictor"]
    assert predictor["storageContainerName"] == STORAGE_CONTAINER
    config = yaml.safe_load(kserve_file("config/configmap/inferenceservice.yaml"))
    initializer = json.loads(config["data"]["storageInitializer"])
    init: dict[str, Any] = {
        "name": "storage-initializer",
        "image": initializer["image"],
        "args": ["s3://mlpipeline/registry/churn/versions/1", "/mnt/models"],
        "resources": {
            "limits": {"cpu": initializer["cpuLimit"], "memory": initializer["memoryLimit"]},
            "requests": {"cpu": initializer["cpuRequest"], "memory": initializer["memoryRequest"]},
        },
        "volumeMounts": [{"name": "kserve-provision-location", "mountPath": "/mnt/models"}],
    }
    if with_storage_container:
        overlay = _storage_container(objs)["spec"]["container"]
        assert set(overlay) == {"name", "securityContext"}  # the image stays the configured one
        init |= overlay
    return {
        "serviceAccountName": predictor["serviceAccountName"],
        "containers": predictor["containers"],
        "initContainers": [init],
        "volumes": [{"name": "kserve-provision-location", "emptyDir": {}}],
    }


def test_the_model_server_pod_meets_restricted(objs, checker) -> None:
    pods = {
        "model server": model_pod(objs, with_storage_container=True),
        "without the storage container": model_pod(objs, with_storage_container=False),
    }
    found = failures(checker, pods)
    assert found["model server"] == []
    # The check bites: KServe's storage initializer alone would be refused.
    refused = {f["reason"] for f in found["without the storage container"]}
    assert refused == {
        "allowPrivilegeEscalation != false",
        "unrestricted capabilities",
        "runAsNonRoot != true",
        "seccompProfile",
    }


def test_the_storage_initializer_image_runs_as_a_non_root_uid() -> None:
    """runAsNonRoot needs a numeric non-zero USER (the kubelet checks the image's)."""
    dockerfile = (ROOT / "docker/storage-initializer.Dockerfile").read_text()
    users = re.findall(r"^USER (\d+)", dockerfile, re.M)
    assert users and int(users[-1]) != 0
