"""The dashboards' PromQL against a real Prometheus (built by hack/prometheus/build.sh) scraping
two real `mlops serve` processes that score labelled traffic: every Grafana panel returns data,
and the cluster dashboard's readings (`PrometheusSeries`) equal what the servers report."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from mlops_control.dashboard import grafana
from mlops_control.dashboard.cluster_source import Prometheus, PrometheusSeries
from mlops_control.traffic.model_server_process import ModelServerProcess, free_port
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from tests.mlops_control.rollout.test_prometheus_source import prometheus_binary  # noqa: F401

pytestmark = pytest.mark.slow
MODEL = "churn"
MONITOR_ENV = {
    "MLOPS_MONITOR_INTERVAL_S": "1",
    "MLOPS_MONITOR_PANE_ROWS": "100",
    "MLOPS_MONITOR_MIN_ROWS": "200",
}


@pytest.fixture(scope="module")
def servers(registered, tmp_path_factory) -> Iterator[dict[str, ModelServerProcess]]:
    logs = tmp_path_factory.mktemp("dashboard-prom-logs")
    env = MONITOR_ENV | {"MLOPS_AUDIT_DIR": str(logs / "audit")}
    running: dict[str, ModelServerProcess] = {}
    try:
        for version in (registered.xgboost_version, registered.logistic_version):
            running[str(version)] = ModelServerProcess.spawn(
                MODEL, str(version), registered.registry_uri, logs, env
            )
        for server in running.values():
            asyncio.run(server.wait_ready())
        yield running
    finally:
        for server in running.values():
            server.stop()


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, servers, tmp_path_factory) -> Iterator[str]:  # noqa: F811
    work = tmp_path_factory.mktemp("dashboard-prometheus")
    targets = ", ".join(f'"{s.url.removeprefix("http://")}"' for s in servers.values())
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: model-servers\n"
        f"    static_configs:\n      - targets: [{targets}]\n"
    )
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(prometheus_binary), f"--config.file={work / 'prometheus.yml'}",
             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200, "Prometheus ready")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def wait(probe, what: str, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = probe()
        except httpx.TransportError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def labelled_traffic(servers) -> Iterator[None]:
    """Scored and labelled rows to both versions, from a thread, while the tests read."""
    df = generate_churn(600, seed=13)
    labels = df.pop(CHURN_SCHEMA.target).astype(int).tolist()
    rows = json.loads(df.to_json(orient="records"))
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(timeout=30) as http:
            i = 0
            while not stop.is_set():
                for server in servers.values():
                    chunk = slice(i % 560, i % 560 + 40)
                    r = http.post(f"{server.url}/v1/models/{MODEL}:predict",
                                  json={"instances": rows[chunk]})  # fmt: skip
                    assert r.status_code == 200, r.text
                    rid = r.headers["x-request-id"]
                    http.post(f"{server.url}/v1/models/{MODEL}/feedback", json={"labels": [
                        {"request_id": rid, "label": y, "row": k}
                        for k, y in enumerate(labels[chunk])
                    ]})  # fmt: skip
                i += 40
                time.sleep(0.2)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(30)


def test_every_grafana_panel_returns_data(prometheus, labelled_traffic) -> None:
    prom = Prometheus(prometheus)
    for uid, dashboard in grafana.dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$model", MODEL).replace("$__rate_interval", "15s")
                wait(lambda e=expr: prom.instant(e), f"{uid} / {panel['title']}: {expr}")


def test_the_cluster_dashboards_readings_equal_the_servers(
    prometheus, servers, labelled_traffic
) -> None:
    series = PrometheusSeries(Prometheus(prometheus), range_s=120)
    versions = set(servers)
    latest = wait(lambda: (r := series.latest())["accuracy"].keys() >= {(MODEL, v) for v in versions}
                  and r["share"].keys() >= {(MODEL, v) for v in versions} and r, "quality and drift")  # fmt: skip
    for version, server in servers.items():
        served = httpx.get(f"{server.url}/v1/models/{MODEL}/drift").json()
        share = latest["share"][(MODEL, version)]
        assert 0.0 <= share <= 1.0
        assert served["latest"][version]["share_drifted"] == pytest.approx(share, abs=0.35)
        assert 0.0 < latest["accuracy"][(MODEL, version)] <= 1.0
        assert latest["labelled"][(MODEL, version)] > 0
    quality = series.quality(MODEL)
    assert set(quality) == versions and all(quality[v] for v in versions)
    drift = series.drift(MODEL, min(versions))
    assert set(CHURN_SCHEMA.feature_names) <= set(drift["series"])
    # A rate needs two scrapes of a version's counter inside its window: on a loaded machine the
    # gauges above can be there a scrape before both rates are.
    traffic = wait(lambda: (t := series.traffic_share(MODEL)).keys() >= versions and t, "rates")
    assert set(traffic) == versions  # both serve the same rate: about half each
    assert all(0.2 < pts[-1][1] < 0.8 for pts in traffic.values()), traffic
    contract = series.feature(MODEL, "contract", min(versions))
    assert set(contract["category_counts"]) >= {"month-to-month", "one-year", "two-year"}
    tenure = series.feature(MODEL, "tenure_months", min(versions))
    assert tenure["moments"]["count"] > 0 and 0 < tenure["moments"]["mean"] < 72
    assert tenure["psi"] and tenure["latest_psi"] is not None
