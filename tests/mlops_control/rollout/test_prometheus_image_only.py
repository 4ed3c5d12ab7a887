"""An image-only rollout (same model, new serving image) read through a real Prometheus: the stable
and the canary report one `version` label, so the source must tell them apart by their pods.

Two real `mlops serve` processes of the same version stand for the stable's and the canary's
pods; Prometheus labels each target with a pod name of the Deployment KServe makes for that role
(as the PodMonitor's `__meta_kubernetes_pod_name` relabelling does on the cluster). The patterns
come from `role_pods` on the InferenceService the traffic writer produces for the rollout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from components import isvc_traffic as traffic
from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    InferenceServiceSpec,
    build_inference_service,
)
from mlops_control.dashboard.cluster_source import Prometheus, PrometheusSeries
from mlops_control.rollout.prometheus_source import PrometheusSource
from mlops_control.rollout.scrape_source import ScrapeSource
from mlops_control.rollout.window import Snapshot
from mlops_control.traffic.model_server_process import ModelServerProcess
from mlops_demo.canary_traffic import instances
from tests.mlops_control.rollout.test_prometheus_source import (  # noqa: F401
    prometheus_binary,
    running_prometheus,
)

pytestmark = pytest.mark.slow
MODEL = "churn"


def image_only_rollout(version: str) -> dict[str, object]:
    """The InferenceService after the writer started `version` on a new image as the canary."""

    def body(image: str) -> dict[str, object]:
        return build_inference_service(
            InferenceServiceSpec(
                name=MODEL, namespace="mlops", image=image,
                storage_uri=f"s3://mlpipeline/registry/churn/versions/{version}",
                model_name=MODEL, model_version=version,
            )
        )  # fmt: skip

    isvc = body("mlops-platform/serving:aaa")
    isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Standard"
    isvc["metadata"]["resourceVersion"] = "1"  # as read from the API server
    new = body("mlops-platform/serving:bbb")["spec"]["predictor"]
    mode = traffic.MODES["standard"]
    return traffic.merge_patch(isvc, mode.start_patch(isvc, version, new, 10))


@pytest.fixture(scope="module")
def one_version_twice(registered, tmp_path_factory) -> Iterator[dict[str, ModelServerProcess]]:
    logs = tmp_path_factory.mktemp("image-only-logs")
    running: dict[str, ModelServerProcess] = {}
    try:
        for role in ("stable", "canary"):
            running[role] = ModelServerProcess.spawn(
                MODEL, str(registered.xgboost_version), registered.registry_uri, logs, {}
            )
        for server in running.values():
            asyncio.run(server.wait_ready())
        yield running
    finally:
        for server in running.values():
            server.stop()


def send(http: httpx.Client, servers: dict[str, ModelServerProcess], rows: list) -> None:
    """12 requests to the stable, 5 to the canary."""
    for role, n in (("stable", 12), ("canary", 5)):
        for k in range(n):
            answer = http.post(
                f"{servers[role].url}/v1/models/{MODEL}:predict",
                json={"instances": rows[k : k + 2]},
            )
            assert answer.status_code == 200, answer.text


def test_the_stable_and_canary_of_one_version_are_read_apart_by_their_pods(
    prometheus_binary,  # noqa: F811
    one_version_twice,
    registered,
    tmp_path,
) -> None:
    version = str(registered.xgboost_version)
    isvc = image_only_rollout(version)
    pods = traffic.role_pods(isvc)
    assert pods is not None
    canary_name = isvc["spec"]["canary"][0]["predictor"]["name"]  # type: ignore[index]
    pod_names = {
        "stable": f"{traffic.predictor_service(MODEL, None)}-6d5f7c8b9-x2k9q",
        "canary": f"{traffic.predictor_service(MODEL, canary_name)}-5f6d7c8b9-abcde",
    }
    config = "".join(
        f'      - targets: ["{server.url.removeprefix("http://")}"]\n'
        f"        labels: {{namespace: image-only, pod: {pod_names[role]}}}\n"
        for role, server in one_version_twice.items()
    )
    rows = instances(40, seed=5)
    with running_prometheus(prometheus_binary, config, tmp_path) as url, httpx.Client() as http:
        send(http, one_version_twice, rows)
        direct = ScrapeSource(
            one_version_twice["stable"].url, one_version_twice["canary"].url
        ).read(MODEL, version, version)
        assert isinstance(direct, Snapshot)
        assert (direct.stable.requests, direct.canary.requests) == (12, 5)

        by_pods = PrometheusSource(url, selector='namespace="image-only"', pods=pods)
        reading = by_pods.read(MODEL, version, version)
        for _ in range(60):  # until Prometheus has scraped the last requests
            if reading == direct:
                break
            asyncio.run(asyncio.sleep(0.5))
            reading = by_pods.read(MODEL, version, version)
        assert reading == direct
        # By the version label alone, both roles read the same sum: 17 against 17.
        merged = PrometheusSource(url, selector='namespace="image-only"').read(
            MODEL, version, version
        )
        assert isinstance(merged, Snapshot)
        assert merged.stable.requests == merged.canary.requests == 17

        # The dashboard's traffic share tells the roles apart the same way. A rate needs an
        # increase between two scrapes: a second wave, 12 to 5 again, after the first was scraped.
        send(http, one_version_twice, rows)
        series = PrometheusSeries(Prometheus(url), range_s=60)
        roles = {f"{version} stable", f"{version} canary"}
        share: dict[str, list[list[float]]] = {}
        for _ in range(60):
            share = series.traffic_share(MODEL, pods)
            if set(share) == roles and all(pts and pts[-1][1] > 0 for pts in share.values()):
                break
            asyncio.run(asyncio.sleep(0.5))
        assert set(share) == roles, share
        stable_share, canary_share = (share[f"{version} {r}"][-1][1] for r in ("stable", "canary"))
        assert stable_share > canary_share > 0, share
        assert stable_share + canary_share == pytest.approx(1.0)
        # By the version label alone: one line, the version's whole traffic.
        assert set(series.traffic_share(MODEL)) == {version}


def test_a_pod_pattern_that_is_not_a_pod_name_pattern_is_refused() -> None:
    from mlops_control.rollout.prometheus_source import PrometheusError

    with pytest.raises(PrometheusError, match="not a pod-name pattern"):
        PrometheusSource("http://127.0.0.1:9", pods=('churn-predictor-.*"}', "x"))


def test_the_cluster_source_takes_the_pods_from_the_actuators_status() -> None:
    from mlops_control.rollout.factory import new_source
    from mlops_control.traffic.actuator import Target, TrafficStatus

    pods = traffic.role_pods(image_only_rollout("3"))
    status = TrafficStatus("churn", "3", "3", 10, 10, detail={"pods": pods})
    source = new_source(Target.kubernetes, status=status, prometheus_url="http://127.0.0.1:9")
    assert isinstance(source, PrometheusSource) and source.pods == pods
    queries = source.queries(MODEL, ("3", "3"))
    assert all(f'pod=~"{p}"' in q for q in queries.values() for p in pods)  # type: ignore[union-attr]
