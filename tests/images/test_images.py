"""The component and serving images, built on a local Debian base, run for real: the training
pipeline in containers (kfp.local.DockerRunner) and the model server answering HTTP requests."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from mlops_core.churn_data import generate_churn
from mlops_core.registry import ModelRegistry
from serving.v1_instances import v1_instances
from tests.images.image_build import SIZES_MB, TIMINGS, Images

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MODEL = "churn"


def inspect(image: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]


def test_images_run_as_non_root_and_report_their_size(images: Images) -> None:
    for image in (images.components, images.serving, images.online_store):
        info = inspect(image)
        assert info["Config"]["User"] == "10001:10001", image
        print(f"{image}: {info['Size'] / 1e6:.0f} MB")
        SIZES_MB[image] = info["Size"] / 1e6
    uid = subprocess.run(
        ["docker", "run", "--rm", images.components, "id", "-u"], capture_output=True, text=True
    )
    assert uid.stdout.strip() == "10001"
    assert inspect(images.serving)["Config"]["Entrypoint"] == ["mlops"]


@pytest.fixture(scope="module")
def trained_registry(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the training pipeline, every step in the component image, with kfp.local.DockerRunner."""
    import kfp.local

    from pipelines.training import build_training_pipeline

    root = tmp_path_factory.mktemp("docker-pipeline")
    # DockerRunner mounts the pipeline root at the same path; the image's user (10001) writes there.
    root.chmod(0o777)
    registry = root / "registry"
    kfp.local.init(runner=kfp.local.DockerRunner(), pipeline_root=str(root), raise_on_error=True)
    pipeline = build_training_pipeline(images.components)
    start = time.perf_counter()
    task = pipeline(registry_uri=str(registry), model_name=MODEL, rows=3000, seed=1)
    TIMINGS["pipeline in containers"] = time.perf_counter() - start
    result = json.loads(task.output)
    assert result["version"] == 1 and result["promoted"] is True, result
    return registry


def test_pipeline_in_containers_registers_a_champion(trained_registry: Path) -> None:
    reg = ModelRegistry(str(trained_registry))
    assert reg.champion(MODEL) == 1
    mv = reg.get(MODEL, 1)
    assert mv.metrics["roc_auc"] > 0.6
    # The artifact the containers wrote loads here with its sha256 checked.
    model = reg.load_model(MODEL, 1)
    assert hasattr(model, "predict_proba")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serving_url(images: Images, trained_registry: Path):  # type: ignore[no-untyped-def]
    """The serving image as KServe runs it: the version folder at /mnt/models, port 8080."""
    version_dir = ModelRegistry(str(trained_registry)).version_dir(MODEL, 1)
    port = _free_port()
    name = f"mlops-serving-test-{port}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
         "-v", f"{version_dir}:/mnt/models:ro", images.serving],
        check=True, capture_output=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.perf_counter()
        deadline = start + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/models/{MODEL}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                pytest.fail(f"serving container not ready in 120s:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.5)
        TIMINGS["serving container ready"] = time.perf_counter() - start
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _instances(n: int, seed: int) -> list[dict]:
    return v1_instances(generate_churn(n, seed=seed).drop(columns=["churned"]))


def test_serving_container_answers_predictions(serving_url: str) -> None:
    r = httpx.post(
        f"{serving_url}/v1/models/{MODEL}:predict",
        json={"instances": _instances(20, 5)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 20
    assert all(0.0 <= p["probability"] <= 1.0 for p in preds)
    assert r.headers["x-model-version"] == "1"


def test_serving_container_rejects_bad_input_and_keeps_serving(serving_url: str) -> None:
    bad = _instances(1, 6)
    bad[0]["tenure_months"] = "not a number"
    r = httpx.post(f"{serving_url}/v1/models/{MODEL}:predict", json={"instances": bad}, timeout=30)
    assert r.status_code == 400
    assert "tenure_months" in r.text
    ok = httpx.post(
        f"{serving_url}/v1/models/{MODEL}:predict", json={"instances": _instances(2, 7)}, timeout=30
    )
    assert ok.status_code == 200


def test_serving_container_exposes_prometheus_metrics(serving_url: str) -> None:
    httpx.post(
        f"{serving_url}/v1/models/{MODEL}:predict", json={"instances": _instances(3, 8)}, timeout=30
    )
    metrics = httpx.get(f"{serving_url}/metrics", timeout=10).text
    assert 'model="churn"' in metrics or "model_name=" in metrics, metrics[:500]
