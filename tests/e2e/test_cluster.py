"""End to end on a real cluster (kind or minikube with `make cluster`): deploy the platform, build
and load the images, run the training pipeline through KFP, then check the InferenceService
answers predictions through the gateway (Traefik) and that Prometheus scrapes its pods.

Runs only where the current kubectl context is a reachable local cluster (kind-*, or the minikube
profile CLUSTER_NAME, default mlops), as it installs the whole platform (~15 minutes); skipped
otherwise with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops_core.churn_data import generate_churn
from serving.v1_instances import v1_instances

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "mlops"
MODEL = "churn"
NODE_PORT = 31080


def _cluster_reachable() -> str | None:
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    probe = subprocess.run(
        ["kubectl", "version", "--request-timeout=5s", "-o", "json"], capture_output=True, text=True
    )
    if probe.returncode != 0 or "serverVersion" not in probe.stdout:
        return "no Kubernetes cluster reachable from the current kubectl context (make cluster)"
    context = subprocess.run(
        ["kubectl", "config", "current-context"], capture_output=True, text=True
    ).stdout.strip()
    # It installs the whole platform: only onto a local cluster, never a shared one.
    if not (context.startswith("kind-") or context == os.environ.get("CLUSTER_NAME", "mlops")):
        return f"the current kubectl context {context!r} is not a local kind/minikube cluster"
    return None


@pytest.fixture(scope="module")
def platform() -> None:
    if reason := _cluster_reachable():
        pytest.skip(reason)
    for target in ("deploy", "images", "kind-load"):
        subprocess.run(["make", target], cwd=ROOT, check=True, timeout=1800)


@contextlib.contextmanager
def port_forward(namespace: str, service: str, ports: str) -> Iterator[None]:
    proc = subprocess.Popen(
        ["kubectl", "port-forward", "-n", namespace, f"svc/{service}", ports],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(3)
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served_model(platform: None) -> Iterator[tuple[str, dict]]:
    import kfp

    from components.deploy import wait_until_ready
    from components.kube_client import load_api_client
    from pipelines.submit import Submission, submit_training

    # versions.mk's default tags: the git revision.
    rev = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    with port_forward("kubeflow", "ml-pipeline", "8887:8888"):
        client = kfp.Client(host="http://localhost:8887")
        run = submit_training(
            Submission(
                host="http://localhost:8887",
                component_image=f"mlops-platform/components:{rev}",
                serving_image=f"mlops-platform/serving:{rev}",
            ),
            client=client,
        )
        finished = client.wait_for_run_completion(run.run_id, timeout=1800)
    assert finished.state == "SUCCEEDED", f"run {run.url} ended {finished.state}"
    status = wait_until_ready(MODEL, NAMESPACE, api_client=load_api_client(), timeout_s=600)
    # KServe writes the model's host (its domainTemplate) into status.url.
    yield status["url"].split("://", 1)[1], status


def test_inference_service_answers(served_model) -> None:
    host, status = served_model
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["IngressReady"] == "True"
    rows = v1_instances(generate_churn(5, seed=3).drop(columns=["churned"]))
    r = httpx.post(
        f"http://127.0.0.1:{NODE_PORT}/v1/models/{MODEL}:predict",
        headers={"Host": host},
        json={"instances": rows},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 5


def test_prometheus_scrapes_the_model_server(served_model) -> None:
    with port_forward("monitoring", "prometheus-operated", "9090:9090"):
        deadline = time.monotonic() + 120
        while True:
            r = httpx.get(
                "http://localhost:9090/api/v1/query",
                params={"query": f'up{{inferenceservice="{MODEL}"}}'},
                timeout=10,
            )
            result = r.json()["data"]["result"]
            if result and all(s["value"][1] == "1" for s in result):
                break
            assert time.monotonic() < deadline, (
                f"Prometheus has no live target for {MODEL}: {result}"
            )
            time.sleep(5)
