"""The Prometheus metrics source against a real Prometheus scraping real model servers.

Prometheus is built from its Go module (hack/prometheus/build.sh, pinned in versions.mk) and
scrapes two `mlops serve` processes; the source's PromQL answers must equal what the direct
/metrics scrape reads from the same servers. "No data" and "failed" stay apart.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from mlops_control.rollout.analysis import NoData, SourceFailed
from mlops_control.rollout.prometheus_source import PrometheusSource
from mlops_control.rollout.scrape_source import ScrapeSource
from mlops_control.rollout.window import Snapshot
from mlops_control.traffic.model_server_process import ModelServerProcess, free_port
from mlops_demo.canary_traffic import instances

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
MODEL = "churn"


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    build = ROOT / "hack" / "prometheus" / "build.sh"
    done = subprocess.run([str(build)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0 and shutil.which("go") is None:
        pytest.skip("Go is not installed, so Prometheus cannot be built (hack/prometheus/build.sh)")
    if done.returncode != 0:
        pytest.fail(f"building Prometheus failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def servers(registered, tmp_path_factory) -> Iterator[dict[str, ModelServerProcess]]:
    logs = tmp_path_factory.mktemp("canary-prom-logs")
    running = {}
    try:
        for role, version in (
            ("stable", registered.xgboost_version),
            ("canary", registered.logistic_version),
        ):
            running[role] = ModelServerProcess.spawn(
                MODEL, str(version), registered.registry_uri, logs, {}
            )
        for server in running.values():
            asyncio.run(server.wait_ready())
        yield running
    finally:
        for server in running.values():
            server.stop()


@contextmanager
def running_prometheus(binary: Path, static_configs: str, work: Path) -> Iterator[str]:
    """A real Prometheus scraping `static_configs` (YAML list items) every second; its URL."""
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: model-servers\n"
        f"    static_configs:\n{static_configs}"
    )
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"Prometheus did not start:\n{(work / 'prometheus.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, servers, tmp_path_factory) -> Iterator[str]:
    targets = ", ".join(f'"{s.url.removeprefix("http://")}"' for s in servers.values())
    config = f"      - targets: [{targets}]\n        labels: {{namespace: canary-test}}\n"
    with running_prometheus(
        prometheus_binary, config, tmp_path_factory.mktemp("prometheus")
    ) as url:
        yield url


def send_traffic(servers: dict[str, ModelServerProcess]) -> None:
    rows = instances(40, seed=3)
    with httpx.Client(timeout=30) as client:
        for i, server in enumerate(servers.values()):
            for k in range(10 + 5 * i):
                r = client.post(
                    f"{server.url}/v1/models/{MODEL}:predict", json={"instances": rows[k : k + 3]}
                )
                assert r.status_code == 200, r.text
            bad = client.post(
                f"{server.url}/v1/models/{MODEL}:predict", json={"instances": [{"age": "x"}]}
            )
            assert bad.status_code == 400  # a client error: counted, but not as the version's


def test_prometheus_answers_equal_the_direct_scrape(servers, prometheus, registered) -> None:
    send_traffic(servers)
    stable, canary = str(registered.xgboost_version), str(registered.logistic_version)
    direct = ScrapeSource(servers["stable"].url, servers["canary"].url).read(MODEL, stable, canary)
    assert isinstance(direct, Snapshot)
    source = PrometheusSource(prometheus, selector='namespace="canary-test"')
    deadline = time.monotonic() + 30
    via_prometheus = source.read(MODEL, stable, canary)
    while via_prometheus != direct and time.monotonic() < deadline:
        time.sleep(0.5)  # until Prometheus has scraped the last requests
        via_prometheus = source.read(MODEL, stable, canary)
    assert via_prometheus == direct
    assert direct.stable.requests == 11 and direct.canary.requests == 16  # 4xx included
    assert direct.stable.errors == 0 and direct.canary.errors == 0  # 4xx is not an error
    assert direct.stable.latency.total == 11
    assert direct.stable.predictions.total == 30 and direct.canary.predictions.total == 45  # rows


def test_an_unknown_version_is_no_data_not_a_failure(servers, prometheus, registered) -> None:
    send_traffic(servers)
    source = PrometheusSource(prometheus)
    reading = source.read(MODEL, str(registered.xgboost_version), "999")
    assert isinstance(reading, NoData) and "canary version 999" in reading.detail
    scrape = ScrapeSource(servers["stable"].url, servers["canary"].url)
    assert isinstance(scrape.read(MODEL, str(registered.xgboost_version), "999"), NoData)


def test_unreachable_or_refusing_prometheus_is_a_failure(prometheus) -> None:
    down = PrometheusSource(f"http://127.0.0.1:{free_port()}").read(MODEL, "1", "2")
    assert isinstance(down, SourceFailed) and "Prometheus" in down.detail
    bad = PrometheusSource(prometheus, selector="namespace=~").read(MODEL, "1", "2")
    assert isinstance(bad, SourceFailed) and "bad_data" in bad.detail
    scrape_down = ScrapeSource(f"http://127.0.0.1:{free_port()}", "http://127.0.0.1:1").read(
        MODEL, "1", "2"
    )
    assert isinstance(scrape_down, SourceFailed)
