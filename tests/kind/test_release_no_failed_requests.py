"""No request fails during a release, on the kind cluster: steady traffic through the gateway
(Traefik) across a promotion and a rollback, by `mlops canary` (the actuator) and by the in-cluster
controller (its `mlops.platform/rollout` command), each staged (components/isvc_release.py).
Every request must answer 200; the tests assert 0 failed requests.

An InferenceService of its own (`churn-release`, with its own model in the cluster's registry), so
it runs beside tests/kind/test_cluster.py's `churn` or alone.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from components import isvc_metadata as names
from tests.kind.cluster_harness import (
    FACTS,
    GATEWAY_PORT,
    gateway_client,
    kube_json,
    kubectl,
    port_forward,
    wait_for,
)
from tests.kind.test_cluster import (
    NAMESPACE,
    REGISTRY,
    Store,
    api_client,
    condition,
    instances,
    register,
    serving_image,
)

pytestmark = [pytest.mark.kind, pytest.mark.slow, pytest.mark.timeout(3600)]

NAME = "churn-release"  # the InferenceService and its model in the registry


@pytest.fixture(scope="module")
def store(kind_cluster) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """The cluster's SeaweedFS on 127.0.0.1 with the credentials `make deploy` copied (as
    test_cluster.py's, without touching its InferenceService)."""
    secret = kube_json("get", "secret", "-n", NAMESPACE, "mlops-model-store")["data"]
    creds = {k: base64.b64decode(v).decode() for k, v in secret.items()}
    with port_forward("kubeflow", "svc/seaweedfs", 8333) as port:
        yield Store(
            os.environ
            | creds
            | {
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLOPS_REGISTRY_URI": REGISTRY,
                "MLOPS_MODEL_NAME": NAME,
            }
        )


def isvc() -> dict:
    return kube_json("get", "inferenceservice", NAME, "-n", NAMESPACE)


def host() -> str:
    return isvc()["status"]["url"].split("://", 1)[1]


def served_versions(n: int = 40) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    with gateway_client(host()) as http:
        for _ in range(n):
            r = http.post(f"/v1/models/{NAME}:predict", json={"instances": instances(1, 4)})
            assert r.status_code == 200, r.text
            counts[r.headers["x-model-version"]] += 1
    return counts


class SteadyTraffic:
    """Requests through the gateway, one after another from a thread, for as long as it runs;
    every answer's status counted (0: no answer at all)."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.rows = instances(200, 11)
        self.stop = threading.Event()
        self.statuses: collections.Counter[int] = collections.Counter()
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        base = f"http://127.0.0.1:{GATEWAY_PORT}"
        with httpx.Client(base_url=base, timeout=30, headers={"Host": self.host}) as http:
            i = 0
            while not self.stop.is_set():
                try:
                    r = http.post(
                        f"/v1/models/{NAME}:predict", json={"instances": [self.rows[i % 200]]}
                    )
                    self.statuses[r.status_code] += 1
                    if r.status_code != 200 and len(self.failures) < 20:
                        self.failures.append(
                            f"{time.strftime('%X')} {r.status_code} {r.text[:200]}"
                        )
                except httpx.HTTPError as e:
                    self.statuses[0] += 1
                    self.failures.append(f"{time.strftime('%X')} {type(e).__name__}: {e}")
                i += 1
                time.sleep(0.02)

    def __enter__(self) -> SteadyTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


def through_a_release(label: str, act, settle_s: float = 10.0) -> SteadyTraffic:  # type: ignore[no-untyped-def]
    """Steady traffic from before `act()` until `settle_s` after it; its figures kept as FACTS."""
    with SteadyTraffic(host()) as traffic:
        time.sleep(settle_s)  # traffic flowing before the release starts
        act()
        time.sleep(settle_s)  # and after it ends: old pods terminating, routes settling
    FACTS[f"{label} (status: count)"] = str(dict(traffic.statuses))
    assert sum(traffic.statuses.values()) > 100, traffic.statuses
    return traffic


@pytest.fixture(scope="module")
def actuator(store: Store):  # type: ignore[no-untyped-def]
    """v1 deployed and served, v2 and v3 registered; the actuator `mlops canary` uses."""
    from components.deploy import deploy_model
    from components.inference_service import InferenceServiceSpec
    from mlops_control.traffic.kubernetes_actuator import KubernetesActuator

    kubectl("delete", "isvc", NAME, "-n", NAMESPACE, "--ignore-not-found", timeout=300)
    for seed in (1, 2, 3):
        register(
            store,
            f"register {NAME} (seed {seed})",
            *("--rows", "3000", "--seed", str(seed), "--margin=-1"),
            model=NAME,
        )
    deploy_model(
        InferenceServiceSpec(
            name=NAME,
            namespace=NAMESPACE,
            image=serving_image(),
            storage_uri=f"{REGISTRY}/{NAME}/versions/1",
            model_name=NAME,
            model_version="1",
        ),
        api_client=api_client(),
    )
    wait_for(f"{NAME} Ready", lambda: condition(isvc(), "Ready") == "True", timeout=600)
    wait_for("the gateway serves v1", lambda: served_versions(5) == {"1": 5}, timeout=120)
    yield KubernetesActuator(
        api_client=api_client(),
        name=NAME,
        namespace=NAMESPACE,
        storage_uri_for=lambda v: f"{REGISTRY}/{NAME}/versions/{v}",
        confirm_timeout_s=300,
    )
    kubectl("delete", "isvc", NAME, "-n", NAMESPACE, "--ignore-not-found", timeout=300)


def canary_served(act, version: str, percent: int) -> None:  # type: ignore[no-untyped-def]
    """A canary of `version` at `percent`, ready and routed to by the gateway."""
    act.start(version, percent)
    wait_for(
        f"v{version} ready at {percent}%",
        lambda: act.status().observed_canary_percent == percent,
        timeout=300,
    )
    wait_for(f"the gateway routes to v{version}", lambda: version in served_versions(), timeout=120)


def test_a_promotion_by_the_actuator_fails_no_request(actuator) -> None:  # type: ignore[no-untyped-def]
    canary_served(actuator, "2", 25)
    traffic = through_a_release("promotion by mlops canary", actuator.promote)
    assert traffic.failed == 0, (traffic.statuses, traffic.failures)
    obj = isvc()
    assert obj["spec"]["predictor"]["name"] == "v2" and not obj["spec"].get("canary")
    assert served_versions() == {"2": 40}


def test_a_rollback_by_the_actuator_fails_no_request(actuator) -> None:  # type: ignore[no-untyped-def]
    canary_served(actuator, "3", 25)
    traffic = through_a_release("rollback by mlops canary", actuator.rollback)
    assert traffic.failed == 0, (traffic.statuses, traffic.failures)
    obj = isvc()
    assert obj["spec"]["predictor"]["name"] == "v2" and not obj["spec"].get("canary")
    assert served_versions() == {"2": 40}


def controller_events(reason: str) -> list[dict]:
    items = kube_json(
        "get", "events", "-n", NAMESPACE,
        "--field-selector", f"involvedObject.kind=InferenceService,involvedObject.name={NAME}",
    )["items"]  # fmt: skip
    uid = isvc()["metadata"]["uid"]
    return [e for e in items if e["reason"] == reason and e["involvedObject"].get("uid") == uid]


@pytest.mark.parametrize(
    ("command", "reason", "stable"),
    [("abort", "CanaryRolledBack", "v2"), ("promote", "CanaryPromoted", "v3")],
)
def test_the_controller_releases_by_command_and_fails_no_request(
    actuator, command: str, reason: str, stable: str
) -> None:  # type: ignore[no-untyped-def]
    """The in-cluster controller (`make deploy`'s Deployment, its own ServiceAccount) takes the
    `mlops.platform/rollout` command through the stages."""
    slow_policy = {"steps": [25, 100], "analysis_interval_s": 3600}  # no analysis meanwhile
    kubectl(
        "annotate", "isvc", NAME, "-n", NAMESPACE, "--overwrite",
        f"{names.ROLLOUT_POLICY}={json.dumps(slow_policy)}",
    )  # fmt: skip
    canary_served(actuator, "3", 25)
    before = len(controller_events(reason))

    def release() -> None:
        kubectl(
            "annotate", "isvc", NAME, "-n", NAMESPACE, "--overwrite",
            f"{names.ROLLOUT_COMMAND}={command}",
        )  # fmt: skip
        wait_for(f"{reason} event", lambda: len(controller_events(reason)) > before, timeout=600)

    traffic = through_a_release(f"{command} by the controller", release)
    assert traffic.failed == 0, (traffic.statuses, traffic.failures)
    obj = isvc()
    assert obj["spec"]["predictor"]["name"] == stable and not obj["spec"].get("canary")
    assert names.ROLLOUT_STATE not in obj["metadata"]["annotations"]
    assert served_versions() == {stable[1:]: 40}
