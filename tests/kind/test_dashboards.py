"""The dashboards against the kind cluster's real Prometheus and Kubernetes API, after
tests/kind/test_cluster.py has deployed the model and rolled versions out (same session, same
cluster; tests/conftest.py runs the cluster's tests in file order, this file after that one):

- every panel of the generated Grafana dashboards (mlops_control/dashboard/grafana.py), its
  variables filled in, returns data from the cluster's Prometheus;
- the in-cluster dashboard (manifests/base/dashboard) answers through the gateway on its host
  name, and in headless Chromium, during a live canary rollout (the controller held after its first
  step), each page shows the numbers its API gives; the screenshots are kept under build/.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mlops_control.dashboard import grafana
from tests.kind.cluster_harness import (
    GATEWAY_PORT,
    ROOT,
    gateway_client,
    kube_json,
    kubectl,
    port_forward,
    wait_for,
)
from tests.kind.test_cluster import (
    MODEL,
    NAMESPACE,
    Traffic,
    events,
    host,
    isvc,
    opt_in_with_a_fast_policy,
    pods_in_motion,
    register_good,
    start_canary_with_kubectl,
    store,  # noqa: F401 (the fixture)
)

pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(3600)]

RATE_WINDOW = "2m"  # what Grafana would put for $__rate_interval at a 30 s scrape interval
DASHBOARD_HOST = "dashboard.mlops.example.com"  # the HTTPRoute's host name
# The model servers' scrape interval, as the PodMonitor sets it.
_POD_MONITOR = yaml.safe_load((ROOT / "manifests/base/monitoring/pod-monitor.yaml").read_text())
SCRAPE_INTERVAL_S = int(_POD_MONITOR["spec"]["podMetricsEndpoints"][0]["interval"].rstrip("s"))
OUT = ROOT / "build" / "dashboard-kind"


class LabelledTraffic:
    """Predictions through the gateway and their labels on the feedback endpoint (live quality),
    from a background thread: enough rows for the drift monitor to judge a window."""

    def __init__(self) -> None:
        secret = kube_json("get", "secret", "-n", NAMESPACE, "mlops-serving-token")["data"]
        self.token = base64.b64decode(secret["token"]).decode()
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        from mlops_core.churn_data import generate_churn

        df = generate_churn(2000, seed=17)
        labels = df.pop("churned").astype(int).tolist()
        rows = json.loads(df.to_json(orient="records"))
        with gateway_client(host(), timeout=30) as http:
            i = 0
            while not self.stop.is_set():
                chunk = slice(i % 1900, i % 1900 + 100)
                r = http.post(f"/v1/models/{MODEL}:predict", json={"instances": rows[chunk]})
                i += 100
                if r.status_code != 200:
                    continue
                rid = r.headers["x-request-id"]
                body = {"labels": [
                    {"request_id": rid, "label": y, "row": k} for k, y in enumerate(labels[chunk])
                ]}  # fmt: skip
                http.post(f"/v1/models/{MODEL}/feedback", json=body,
                          headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
                self.sent += 100

    def __enter__(self) -> LabelledTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_every_grafana_panel_query_returns_data(kind_cluster) -> None:  # type: ignore[no-untyped-def]
    with (
        LabelledTraffic() as traffic,
        port_forward("monitoring", "svc/prometheus-operated", 9090) as port,
    ):

        def query(expr: str) -> list:
            r = httpx.get(
                f"http://127.0.0.1:{port}/api/v1/query", params={"query": expr}, timeout=20
            )
            doc = r.json()
            assert doc["status"] == "success", (expr, doc)  # a malformed query fails at once
            return doc["data"]["result"]

        for uid, dashboard in grafana.dashboards().items():
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = (
                        target["expr"]
                        .replace("$model", MODEL)
                        .replace("$__rate_interval", RATE_WINDOW)
                    )
                    wait_for(
                        f"{uid} / {panel['title']}: {expr}", lambda e=expr: query(e), timeout=600
                    )
        assert traffic.sent > 0


@pytest.fixture(scope="module")
def held_rollout(store) -> Iterator[str]:  # type: ignore[no-untyped-def]  # noqa: F811
    """A good version rolled out by the controller, which is stopped after its first step up: a
    canary in progress, frozen while the pages are read; then the controller finishes it."""
    # Half a minute between analyses: the controller (stopped within seconds of the first step
    # up) is gone well before the step after it.
    opt_in_with_a_fast_policy(max_prediction_divergence=1.5, analysis_interval_s=30)
    wait_for("no model pod in motion", lambda: not pods_in_motion(), timeout=300)
    steps_before = len(events("CanaryStepUp"))
    good = register_good(store, "register a version for the dashboard's rollout", seed=6)
    start_canary_with_kubectl(good)
    with Traffic():
        wait_for("a step up", lambda: len(events("CanaryStepUp")) > steps_before, timeout=900)
        kubectl("scale", "deployment/mlops-canary-controller", "-n", NAMESPACE, "--replicas=0")
    try:
        wait_for("the controller stopped", lambda: not kube_json(
            "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/name=mlops-canary-controller"
        )["items"], timeout=300)  # fmt: skip
        assert isvc()["spec"].get("canary"), "the rollout ended before the controller stopped"
        # No traffic while the pages are read: the servers' drift figures hold still once
        # Prometheus has scraped their last values (two scrape intervals of the PodMonitor).
        time.sleep(2 * SCRAPE_INTERVAL_S)
        yield good
    finally:
        kubectl("scale", "deployment/mlops-canary-controller", "-n", NAMESPACE, "--replicas=2")
        with Traffic():
            wait_for("the rollout finished", lambda: not isvc()["spec"].get("canary"), timeout=900)


def test_the_dashboard_answers_through_the_gateway(kind_cluster) -> None:  # type: ignore[no-untyped-def]
    kubectl("rollout", "status", "deployment/mlops-dashboard", "-n", NAMESPACE, "--timeout=300s")
    with httpx.Client(
        base_url=f"http://127.0.0.1:{GATEWAY_PORT}", headers={"Host": DASHBOARD_HOST}
    ) as http:
        health = wait_for("the dashboard behind the gateway",
                          lambda: (r := http.get("/healthz")).status_code == 200 and r.json())  # fmt: skip
        assert health["source"] == "cluster"
        portfolio = http.get("/api/portfolio").json()
        assert MODEL in [m["name"] for m in portfolio["models"]]
        assert http.post("/api/portfolio").status_code == 405  # it changes nothing


def test_the_pages_show_a_live_rollout_as_the_api_does(held_rollout: str) -> None:
    ui = subprocess.run(["bash", str(ROOT / "hack" / "kfp" / "ensure-browser.sh")],
                        capture_output=True, text=True)  # fmt: skip
    if ui.returncode == 3:
        pytest.skip(f"no headless Chromium and cannot install it here: {ui.stderr.strip()}")
    assert ui.returncode == 0, ui.stderr[-3000:]
    flow = ROOT / "tests" / "mlops_control" / "dashboard" / "browser_flow.py"
    with port_forward(NAMESPACE, "svc/mlops-dashboard", 80) as port:
        url = f"http://127.0.0.1:{port}"
        wait_for("the dashboard's first statuses", lambda: (
            httpx.get(f"{url}/api/models/{MODEL}", timeout=30).json().get("rollout") or {}
        ).get("checks"), timeout=120)  # fmt: skip
        result = subprocess.run(
            [ui.stdout.strip().splitlines()[-1], str(flow), url, MODEL, "monthly_charges", str(OUT)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        frames = [line for line in result.stderr.splitlines() if not line.startswith("#")]
        assert result.returncode == 0, "\n".join(frames)[-4000:]
        seen = json.loads(result.stdout.strip().splitlines()[-1])
        portfolio = httpx.get(f"{url}/api/portfolio", timeout=30).json()
        model = httpx.get(f"{url}/api/models/{MODEL}", timeout=30).json()
    row = next(m for m in portfolio["models"] if m["name"] == MODEL)
    assert row["rollout"]["in_progress"] and row["rollout"]["canary"] == held_rollout
    assert seen["portfolio"]["rollout_percent"] == str(row["rollout"]["canary_percent"])
    assert seen["portfolio"]["decision"] == row["last_decision"]["action"]
    assert seen["model"]["canary_percent"] == f"{model['rollout']['canary_percent']}%"
    for name, points in model["rollout"]["checks"].items():
        _, evidence, bound, _ = points[-1]
        shown = seen["model"]["checks"][name]
        assert shown["evidence"] == _fmt(evidence) and shown["bound"] == _fmt(bound), name
    for name, shown in seen["model"]["psi"].items():
        assert shown == _fmt(model["drift"]["series"][name][-1][1]), name
    assert not seen["errors"], seen["errors"]
    assert all(Path(OUT / f).stat().st_size > 10_000 for f in
               ("dashboard-portfolio.png", "dashboard-model.png", "dashboard-feature.png"))  # fmt: skip


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"
