"""`mlops canary run --target kubernetes`'s loop against a real kube-apiserver: the rollout loop
(serving/canary/rollout.py) with the Kubernetes actuator patching a real InferenceService, reading
real model servers' /metrics, while a traffic thread splits requests the way Knative would by the
InferenceService's `canaryTrafficPercent`. A good version is promoted, a bad one rolled back, and
every decision is an Event on the InferenceService."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from kubernetes import client

from components import isvc_traffic as patches
from components.deploy import deploy_model
from components.inference_service import GROUP, PLURAL, VERSION, InferenceServiceSpec
from components.train_and_register import train_and_register
from mlops_core.jsonl_log import DecisionLog
from mlops_core.registry import ModelRegistry
from serving.canary.kubernetes_actuator import KubernetesActuator
from serving.canary.model_server_process import ModelServerProcess
from serving.canary.policy import RolloutPolicy
from serving.canary.rollout import run_rollout
from serving.canary.scrape_source import ScrapeSource
from serving.canary.traffic import instances

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]
MODEL = "churn"


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
                isvc = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name
                )
                ann = isvc["metadata"].get("annotations") or {}
                stable = ann.get(patches.STABLE_VERSION) or ann["mlops.io/model-version"]
                canary = ann.get(patches.CANARY_VERSION)
                pct = patches.MODES["serverless"].canary_percent(isvc) or 0
                for _ in range(20):
                    version = canary if canary and rng.random() * 100 < pct else stable
                    idx = rng.integers(0, len(rows), 2)
                    r = http.post(
                        f"{self.servers[version]}/v1/models/{MODEL}:predict",
                        json={"instances": [rows[i] for i in idx]},
                    )
                    if r.status_code != 200:
                        self.failures.append(f"v{version}: {r.status_code} {r.text[:200]}")


@pytest.fixture
def model_servers(tmp_path: Path) -> Iterator[tuple[ModelRegistry, dict[str, str]]]:
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
            # Warm up, as a readiness probe would on the cluster: a cold server's first requests
            # are slow, a real but one-off difference the latency check should not be fed.
            for i in range(10):
                httpx.post(
                    f"{server.url}/v1/models/{MODEL}:predict",
                    json={"instances": rows[i : i + 2]},
                    timeout=30,
                ).raise_for_status()
        yield registry, {s.version: s.url for s in running}
    finally:
        for server in running:
            server.stop()


def test_run_promotes_a_good_version_and_rolls_back_a_bad_one(
    admin_api, project_base, model_servers, tmp_path
):
    registry, servers = model_servers
    name = f"churn-{uuid.uuid4().hex[:8]}"
    deploy_model(
        InferenceServiceSpec(
            name=name,
            namespace=project_base,
            image="mlops-platform/serving:test",
            storage_uri=registry.version_uri(MODEL, 1),
            model_name=MODEL,
            model_version="1",
        ),
        api_client=admin_api,
    )
    # As an operator with their own kubeconfig (the deployer account's rights are test_apiserver_rbac's).
    actuator = KubernetesActuator(
        api_client=admin_api,
        name=name,
        namespace=project_base,
        storage_uri_for=lambda v: registry.version_uri(MODEL, int(v)),
        confirm_timeout_s=0,  # no KServe controller here to report the split
    )
    policy = RolloutPolicy(analysis_interval_s=1.0, min_requests_per_step=40)
    log = DecisionLog(tmp_path / "decisions.jsonl")

    def source_for(status):
        return ScrapeSource(servers[status.stable_version], servers[status.canary_version])

    split = KnativeSplit(admin_api, name, project_base, servers)
    split.thread.start()
    try:
        actuator.start("2", policy.first_step)
        good = run_rollout(
            model=MODEL, actuator=actuator, source_for=source_for, policy=policy, log=log
        )
        assert good.action == "promote", good.reason
        status = actuator.status()
        assert (status.stable_version, status.canary_version) == ("2", None)

        actuator.start("3", policy.first_step)
        bad = run_rollout(
            model=MODEL, actuator=actuator, source_for=source_for, policy=policy, log=log
        )
        assert bad.action == "rollback", bad.reason
        assert {c.name for c in bad.checks if c.status == "fail"} == {"predictions"}
    finally:
        split.stop.set()
        split.thread.join(timeout=60)

    assert split.failures == []
    isvc = client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, project_base, PLURAL, name
    )
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 0  # rolled back to v2's revision
    ann = isvc["metadata"]["annotations"]
    assert ann[patches.STABLE_VERSION] == "2" and patches.CANARY_VERSION not in ann
    assert '"action":"rollback"' in ann[patches.LAST_DECISION]
    events = client.CoreV1Api(admin_api).list_namespaced_event(
        project_base, field_selector=f"involvedObject.name={name}"
    )
    reasons = [e.reason for e in events.items]
    assert {"CanaryStepUp", "CanaryPromoted", "CanaryRolledBack"} <= set(reasons)
    assert [e.type for e in events.items if e.reason == "CanaryRolledBack"] == ["Warning"]
    actions = [e["decision"]["action"] for e in log.read()]
    assert actions.count("promote") == 1 and actions.count("rollback") == 1
