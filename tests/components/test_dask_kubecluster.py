"""The DaskCluster the step creates: every field is one the pinned dask-kubernetes operator's CRD
declares (read from the operator's own package at the version pyproject.toml pins), the scheduler
address is the Service the operator makes, and the step's pod owns the cluster (KFP's launcher
variables, read in the KFP source at KFP_VERSION)."""

from __future__ import annotations

import re
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import V1OwnerReference

from components.dask_compute import ComputeSpec
from components.dask_kubecluster import (
    GROUP,
    KIND,
    ORPHAN_IDLE_S,
    PLURAL,
    POD_NAME_ENV,
    POD_UID_ENV,
    SCHEDULER_PORT,
    SERVICE_ACCOUNT,
    VERSION,
    _owner_from_env,
    daskcluster_body,
    scheduler_address,
    store_env,
)
from tests.upstream import ROOT, kfp_file

OPERATOR = "dask-kubernetes"
SPEC = ComputeSpec(compute="dask", workers=3, worker_memory="3GiB", worker_cpu=2)


def _pinned() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{OPERATOR}==([^"]+)"', text)
    assert match, f"pyproject.toml pins no {OPERATOR}"
    return match.group(1)


def _operator_dir() -> Path:
    try:
        installed = metadata.version(OPERATOR)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{OPERATOR} is not installed (the dev extra): its CRD cannot be read")
    assert installed == _pinned(), f"installed {OPERATOR} {installed}, pyproject pins {_pinned()}"
    import dask_kubernetes

    return Path(dask_kubernetes.__file__).parent / "operator"


def _crd() -> dict[str, Any]:
    path = _operator_dir() / "deployment/helm/dask-kubernetes-operator/crds/daskcluster.yaml"
    return yaml.safe_load(path.read_text())


def _unknown(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the API server's structural pruning would drop silently."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict) and "properties" in schema:
        out = []
        for k, v in value.items():
            if k not in schema["properties"]:
                out.append(f"{where}.{k}")
            else:
                out += _unknown(v, schema["properties"][k], f"{where}.{k}")
        return out
    if isinstance(value, list) and "items" in schema:
        return [
            u for i, v in enumerate(value) for u in _unknown(v, schema["items"], f"{where}[{i}]")
        ]
    return []


def test_the_names_are_the_operators() -> None:
    crd = _crd()
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["names"]["kind"] == KIND
    assert crd["spec"]["names"]["plural"] == PLURAL
    assert VERSION in [v["name"] for v in crd["spec"]["versions"] if v["served"]]


def test_every_field_of_the_body_is_in_the_crd_and_valid() -> None:
    env = store_env("mlpipeline-minio-artifact/accesskey/secretkey", "http://seaweedfs:9000")
    body = daskcluster_body("mlops-dask-x", image="img:1", spec=SPEC, owner=None, env=env)
    (version,) = [v for v in _crd()["spec"]["versions"] if v["name"] == VERSION]
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    jsonschema.validate(body["spec"], schema)
    assert _unknown(body["spec"], schema, "spec") == []
    worker = body["spec"]["worker"]
    assert worker["replicas"] == 3
    (container,) = worker["spec"]["containers"]
    # CPU is requested (scheduling), never limited (throttling); memory is both.
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": str(3 * 2**30)},
        "limits": {"memory": str(3 * 2**30)},
    }
    assert container["args"][container["args"].index("--memory-limit") + 1] == str(3 * 2**30)
    # The operator's idle check (its backstop for a step killed before it deleted the cluster)
    # asks the Service's "http-dashboard" port first and is skipped without one.
    assert body["spec"]["idleTimeout"] == ORPHAN_IDLE_S
    ports = {p["name"]: p["port"] for p in body["spec"]["scheduler"]["service"]["ports"]}
    assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
    assert container["args"][container["args"].index("--nthreads") + 1] == "2"
    for role in ("worker", "scheduler"):
        assert body["spec"][role]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    # s3:// data on the workers: the keys come from the Secret, never written into the body.
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://seaweedfs:9000"} in container["env"]
    assert {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "mlpipeline-minio-artifact", "key": "secretkey"}},
    } in container["env"]


def test_the_scheduler_address_is_the_service_the_operator_makes() -> None:
    controller = (_operator_dir() / "controller" / "controller.py").read_text()
    assert 'f"tcp://{cluster_name}-scheduler.{namespace}.svc.cluster.local:8786"' in controller
    # The idle check behind idleTimeout: a 5 s timer, the "http-dashboard" port, then the RPC.
    idle = controller[controller.index("async def check_scheduler_idle") :]
    assert 'port_name="http-dashboard"' in idle[:600] and "scheduler_comm.check_idle()" in idle
    shutdown = controller[controller.index("async def daskcluster_autoshutdown") - 80 :]
    assert "interval=5.0" in shutdown[:80] and 'spec.get("idleTimeout", 0)' in shutdown
    assert (
        scheduler_address("c1", "kubeflow")
        == f"tcp://c1-scheduler.kubeflow.svc.cluster.local:{SCHEDULER_PORT}"
    )
    body = daskcluster_body("c1", image="img:1", spec=SPEC, owner=None)
    service = body["spec"]["scheduler"]["service"]
    assert service["selector"] == {"dask.org/cluster-name": "c1", "dask.org/component": "scheduler"}
    assert (
        "dask.org/cluster-name" in controller and '"dask.org/component": "scheduler"' in controller
    )


def test_the_steps_pod_owns_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    # KFP's argo compiler gives every executor these two from the downward API.
    common = kfp_file("backend/src/v2/compiler/argocompiler/common.go")
    for env, field in ((POD_NAME_ENV, "metadata.name"), (POD_UID_ENV, "metadata.uid")):
        assert re.search(rf'Name: "{env}",\s*ValueFrom:.*?FieldPath: "{field}"', common, re.S)
    monkeypatch.setenv(POD_NAME_ENV, "training-abc-train-123")
    monkeypatch.setenv(POD_UID_ENV, "0f3c2a4e-1111-2222-3333-444455556666")
    body = daskcluster_body("c1", image="img:1", spec=SPEC, owner=_owner_from_env())
    (owner,) = body["metadata"]["ownerReferences"]
    assert owner["kind"] == "Pod" and owner["apiVersion"] == "v1"
    assert (owner["name"], owner["uid"]) == (
        "training-abc-train-123",
        "0f3c2a4e-1111-2222-3333-444455556666",
    )
    # Every key is an OwnerReference field of the Kubernetes API.
    assert set(owner) <= set(V1OwnerReference.attribute_map.values())


def test_without_the_pod_variables_no_owner_is_invented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POD_NAME_ENV, raising=False)
    monkeypatch.delenv(POD_UID_ENV, raising=False)
    assert _owner_from_env() is None
    body = daskcluster_body("c1", image="img:1", spec=SPEC, owner=None)
    assert "ownerReferences" not in body["metadata"]


def test_workers_read_a_kfp_artifact_from_the_store_not_the_steps_download(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from components.dask_compute import workers_uri

    uri, path = "minio://mlpipeline/v2/artifacts/run/ingest/train", "/minio/mlpipeline/v2/train"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    assert workers_uri(uri, path) == "s3://mlpipeline/v2/artifacts/run/ingest/train"
    assert workers_uri("/tmp/local/train", "/tmp/local/train") == "/tmp/local/train"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")  # kfp.local: workers share this machine
    assert workers_uri(uri, path) == path


def test_sigterm_deletes_the_cluster_on_the_way_out(tmp_path: Path) -> None:
    """A terminated run's step gets SIGTERM: the delete runs in the handler itself, before the
    block unwinds (the container may end any moment), and the `finally` runs too."""
    import subprocess
    import sys

    marker = tmp_path / "deleted"
    script = (
        "import os, signal, time\n"
        "from components.dask_kubecluster import _sigterm_unwinds\n"
        f"log = open({str(marker)!r}, 'w')\n"
        "with _sigterm_unwinds(first=lambda: log.write('first;')):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    finally:\n"
        "        log.write('finally')\n"
        "        log.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 128 + 15
    assert marker.read_text() == "first;finally"


def test_a_living_step_keeps_its_scheduler_from_looking_idle() -> None:
    """The operator deletes a DaskCluster whose scheduler is idle for the body's idleTimeout:
    while the step lives, its heartbeat task keeps the scheduler's transitions moving, so
    `check_idle` (what the operator asks) never reports it idle; once it stops, it does."""
    from distributed import Client, LocalCluster

    from components.dask_kubecluster import keep_busy

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        scheduler = cluster.scheduler

        def idle_for() -> float:  # what the operator compares with idleTimeout
            since = scheduler.check_idle()
            return 0.0 if since is None else time.time() - since

        with keep_busy(client, every_s=0.2):
            ages = []
            for _ in range(15):
                time.sleep(0.2)
                ages.append(idle_for())
            assert max(ages) < 1.0, ages  # every beat moves its idle time forward
        idle_for()
        time.sleep(2)
        assert idle_for() > 1.5  # nothing moves once the beats stop: idle, as after a lost step


def test_the_cluster_domain_comes_from_the_pods_search_list(tmp_path: Path) -> None:
    from components.dask_kubecluster import cluster_domain

    conf = tmp_path / "resolv.conf"
    conf.write_text(
        "search kubeflow.svc.corp.example svc.corp.example corp.example\nnameserver 10.96.0.10\n"
    )
    assert cluster_domain(str(conf)) == "corp.example"
    assert cluster_domain(str(tmp_path / "absent")) == "cluster.local"


def test_an_address_answered_in_another_protocol_is_retried_not_fatal() -> None:
    """What answered a new Service's ClusterIP before kube-proxy programmed it: an HTTP reply,
    which the Dask client reads as a 3 EiB frame. The step retries, then names the address."""
    import socket
    import threading
    import time

    from components.dask_kubecluster import DaskClusterError, _connect

    server = socket.create_server(("127.0.0.1", 0))
    answered: list[int] = []

    def answer_http() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                answered.append(1)
                time.sleep(0.5)

    threading.Thread(target=answer_http, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(DaskClusterError, match=f"{address} did not answer in time"):
            _connect(address, time.monotonic() + 4)
    finally:
        server.close()
    assert len(answered) >= 2  # retried, not ended by the first reply


def test_the_phases_the_step_waits_for_are_the_operators() -> None:
    """The step connects once the phase is Pending (scheduler, Service and workers made) or
    Running (the Service has a status); the operator's two handlers set them, racing."""
    controller = (_operator_dir() / "controller" / "controller.py").read_text()
    made = controller.index("async def daskcluster_create_components")
    assert 'patch.status["phase"] = "Pending"' in controller[made : made + 4000]
    assert 'phase = "Running"' in controller
    assert 'patch.status["phase"] = "Error"' in controller
