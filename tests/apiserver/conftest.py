"""Fixtures for the tests that run against a real kube-apiserver + etcd (see control_plane.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from tests.apiserver.control_plane import (
    ControlPlane,
    ControlPlaneError,
    assets_dir,
    service_account_api,
    start_control_plane,
)
from tests.apiserver.project_manifests import (
    BASE,
    DEPLOYER_SERVICE_ACCOUNT,
    OVERLAYS,
    PROJECT_NAMESPACE,
)
from tests.apiserver.upstream_crds import (
    gateway_api_crds,
    kserve_cluster_storage_container_crd,
    kserve_inferenceservice_crd,
    prometheus_operator_crds,
)

KUBECTL = shutil.which("kubectl")
# Figures for the terminal summary: where the binaries came from, build and start times.
_figures: dict[str, str] = {}
_assets: Path | ControlPlaneError | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provide the binaries before any test runs, so a first-time build (minutes) is not counted
    against a test's timeout. Only when apiserver tests were selected."""
    global _assets
    if session.config.option.collectonly or not any(
        item.get_closest_marker("apiserver") for item in session.items
    ):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            "apiserver tests: providing kube-apiserver + etcd (KUBEBUILDER_ASSETS, the cache, or "
            "a build from the pinned release: about 20 minutes on 2 cores the first time)"
        )
    started = time.monotonic()
    try:
        _assets = assets_dir()
    except ControlPlaneError as exc:
        _assets = exc
        return
    _figures["kube-apiserver/etcd binaries"] = f"{_assets} ({time.monotonic() - started:.1f} s)"


def pytest_terminal_summary(terminalreporter) -> None:
    for name, value in _figures.items():
        terminalreporter.write_line(f"{name}: {value}")


@dataclass
class Kubectl:
    """kubectl against the test API server as its admin."""

    binary: str
    kubeconfig: Path

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}{done.stdout}"
            )
        return done


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        if isinstance(_assets, ControlPlaneError):
            raise _assets
        plane = start_control_plane(_assets or assets_dir())
    except ControlPlaneError as exc:
        pytest.fail(f"the kube-apiserver test control plane did not start: {exc}")
    _figures["kube-apiserver start (etcd + apiserver to /readyz)"] = f"{plane.startup_s:.1f} s"
    yield plane
    for name, mib in plane.peak_rss_mib().items():
        _figures[f"{name} peak RSS"] = f"{mib:.0f} MiB"
    plane.stop()
    shutil.rmtree(plane.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed (the manifest tests render and apply with it)")
    return Kubectl(KUBECTL, control_plane.kubeconfig)


@pytest.fixture(scope="session")
def admin_api(control_plane: ControlPlane) -> client.ApiClient:
    """A Kubernetes API client authenticated as the test admin (system:masters)."""
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def crds(
    kubectl: Kubectl, admin_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """The pinned upstream CRDs the manifests use, installed and Established: KServe's
    InferenceService, and the prometheus-operator and Gateway API kinds found in manifests/base
    and the overlays. Returns their names."""
    monitoring_kinds, gateway_kinds = set(), set()
    for directory in (BASE, *OVERLAYS):
        for doc in yaml.safe_load_all(kubectl.run("kustomize", str(directory)).stdout):
            if doc and doc["apiVersion"].startswith("monitoring.coreos.com/"):
                monitoring_kinds.add(doc["kind"])
            if doc and doc["apiVersion"].startswith("gateway.networking.k8s.io/"):
                gateway_kinds.add(doc["kind"])
    path = tmp_path_factory.mktemp("crds") / "crds.json"
    crds = [
        kserve_inferenceservice_crd(),
        kserve_cluster_storage_container_crd(),
        *prometheus_operator_crds(monitoring_kinds),
        *gateway_api_crds(gateway_kinds),
    ]
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": crds}))
    # Server-side apply: prometheus-operator's CRDs are too big for kubectl's
    # last-applied-configuration annotation.
    names = kubectl.run(
        "apply", "--server-side", "--field-manager=mlops-tests", "-f", str(path), "-o", "name"
    ).stdout.split()
    # Polled here: kubectl 1.32's `wait` fails instead of waiting while conditions are still unset.
    api = client.ApiextensionsV1Api(admin_api)
    deadline = time.monotonic() + 60
    pending = [crd["metadata"]["name"] for crd in crds]
    while pending:
        pending = [
            name
            for name in pending
            if not any(
                c.type == "Established" and c.status == "True"
                for c in api.read_custom_resource_definition(name).status.conditions or []
            )
        ]
        if pending and time.monotonic() > deadline:
            raise AssertionError(f"CRDs not Established after 60 s: {pending}")
        time.sleep(0.1)
    return names


@pytest.fixture
def namespace(admin_api: client.ApiClient) -> str:
    """A fresh namespace for one test (left behind: no namespace controller runs to finalize it,
    and the whole control plane is thrown away after the session)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(admin_api).create_namespace(client.V1Namespace(metadata={"name": name}))
    return name


KUBEFLOW_NS = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kubeflow\n"


@pytest.fixture(scope="session")
def project_base(kubectl: Kubectl, crds: list[str]) -> str:
    """manifests/base applied for real (namespace, ServiceAccounts, the deployer Role and its
    binding, monitoring objects). Returns the project namespace."""
    rendered = kubectl.run("kustomize", str(BASE)).stdout
    # The base admits the model servers to KFP's object store with a NetworkPolicy in KFP's
    # namespace; `make deploy` installs KFP first, so stand in for that namespace here.
    kubectl.run(
        "apply", "--server-side", "--field-manager=mlops-tests", "-f", "-", stdin=KUBEFLOW_NS
    )
    kubectl.run("apply", "--server-side", "--field-manager=mlops-tests", "-f", "-", stdin=rendered)
    return PROJECT_NAMESPACE


@pytest.fixture(scope="session")
def deployer_api(
    control_plane: ControlPlane, admin_api: client.ApiClient, project_base: str
) -> client.ApiClient:
    """An API client authenticated as the deploy step's ServiceAccount from the manifests, with a
    real token from the TokenRequest API: every call it makes goes through RBAC."""
    return service_account_api(control_plane, admin_api, project_base, DEPLOYER_SERVICE_ACCOUNT)


@pytest.fixture(autouse=True)
def knative_mode_isvcs(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests stand in for KServe's controller with Knative-mode status writes
    (kserve_controller_status.serverless_status), so the InferenceServices they build ask for that
    mode; the traffic writer follows the object's annotation. The platform's default, Standard
    mode, runs against KServe's real controller in tests/kind."""
    monkeypatch.setattr("components.inference_service.DEPLOYMENT_MODE", "Serverless")
