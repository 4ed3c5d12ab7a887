"""What the canary tests against the API server share: real model servers for three versions
(v1 stable, v2 a good retrain, v3 trained on inverted labels) and a traffic thread that splits
requests between them as KServe would, by the InferenceService's traffic state as written."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kubernetes import client

from components import isvc_traffic as traffic
from components.inference_service import GROUP, PLURAL, VERSION
from components.isvc_metadata import MODEL_VERSION
from mlops_control.traffic.model_server_process import ModelServerProcess, free_port
from mlops_core.registry import ModelRegistry
from mlops_demo.canary_traffic import instances
from mlops_demo.train_and_register import train_and_register

MODEL = "churn"
ROOT = Path(__file__).resolve().parents[2]


class KnativeSplit:
    """Sends traffic to the local servers in the proportions the InferenceService asks for."""

    def __init__(self, api: client.ApiClient, name: str, namespace: str, servers: dict[str, str]):
        self.custom = client.CustomObjectsApi(api)
        self.name, self.namespace, self.servers = name, namespace, servers
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        rows = instances(500, seed=9)
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                try:
                    self._batch(http, rng, rows)
                except Exception as e:  # recorded (the tests assert none), and traffic goes on:
                    # a thread that died silently left a test waiting on a rollout with no traffic
                    self.failures.append(f"traffic: {type(e).__name__}: {e}"[:300])
                    time.sleep(0.5)

    def _batch(self, http: httpx.Client, rng: np.random.Generator, rows: list[dict]) -> None:
        isvc = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        mode = traffic.mode_of(isvc)
        ann = traffic.annotations_of(isvc)
        stable = mode.stable_version(isvc) or ann[MODEL_VERSION]
        canary = mode.canary_version(isvc)
        pct = mode.canary_percent(isvc) or 0
        for _ in range(20):
            version = canary if canary and rng.random() * 100 < pct else stable
            idx = rng.integers(0, len(rows), 2)
            r = http.post(
                f"{self.servers[version]}/v1/models/{MODEL}:predict",
                json={"instances": [rows[i] for i in idx]},
            )
            if r.status_code != 200:
                self.failures.append(f"v{version}: {r.status_code} {r.text[:200]}")

    def __enter__(self) -> KnativeSplit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@contextlib.contextmanager
def three_versions(tmp_path: Path) -> Iterator[tuple[ModelRegistry, dict[str, ModelServerProcess]]]:
    registry = ModelRegistry(str(tmp_path / "registry"))
    versions = [
        train_and_register(registry, MODEL, rows=12000, seed=1, estimator="xgboost"),
        train_and_register(registry, MODEL, rows=12000, seed=2, estimator="xgboost"),
        train_and_register(registry, MODEL, rows=3000, seed=3, invert_labels=True),
    ]
    running = [
        ModelServerProcess.spawn(MODEL, str(v), registry.uri, tmp_path / "logs", {})
        for v in versions
    ]
    try:
        rows = instances(20, seed=1)
        for server in running:
            asyncio.run(server.wait_ready())
            # As a readiness probe would on the cluster; the policy's warm-up covers the rest.
            for i in range(10):
                httpx.post(
                    f"{server.url}/v1/models/{MODEL}:predict",
                    json={"instances": rows[i : i + 2]},
                    timeout=30,
                ).raise_for_status()
        yield registry, {s.version: s for s in running}
    finally:
        for server in running:
            server.stop()


@contextlib.contextmanager
def prometheus_scraping(
    targets: list[str], work: Path, labels: dict[str, str] | None = None
) -> Iterator[str]:
    """A real Prometheus (built by hack/prometheus/build.sh) scraping `targets` every second;
    `labels` are added to every series, as the cluster's relabelling adds `namespace`."""
    build = subprocess.run(
        [str(ROOT / "hack" / "prometheus" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if build.returncode != 0 and shutil.which("go") is None:
        pytest.skip("Go is not installed, so Prometheus cannot be built (hack/prometheus/build.sh)")
    assert build.returncode == 0, build.stderr[-3000:]
    binary = build.stdout.strip().splitlines()[-1]
    hosts = ", ".join(f'"{u.removeprefix("http://")}"' for u in targets)
    extra = ""
    if labels:
        extra = "        labels: {" + ", ".join(f'{k}: "{v}"' for k, v in labels.items()) + "}\n"
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: model-servers\n"
        f"    static_configs:\n      - targets: [{hosts}]\n{extra}"
    )
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(url):
                assert proc.poll() is None and time.monotonic() < deadline, (
                    "Prometheus did not start"
                )
                time.sleep(0.2)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
