"""`mlops canary run --target kubernetes`'s loop against a real kube-apiserver: the rollout loop
(mlops_control/rollout/loop.py) with the Kubernetes actuator patching a real InferenceService, reading
real model servers' /metrics, while a traffic thread splits requests the way Knative would by the
InferenceService's `canaryTrafficPercent`. A good version is promoted, a bad one rolled back, and
every decision is an Event on the InferenceService."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from components import isvc_traffic as patches
from components.deploy import deploy_model
from components.inference_service import GROUP, PLURAL, VERSION, InferenceServiceSpec
from mlops_control.rollout.loop import run_rollout
from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.rollout.scrape_source import ScrapeSource
from mlops_control.traffic.kubernetes_actuator import KubernetesActuator
from mlops_core.jsonl_log import DecisionLog
from mlops_core.registry import ModelRegistry
from tests.apiserver.canary_harness import MODEL, KnativeSplit, three_versions

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]


@pytest.fixture
def model_servers(tmp_path: Path) -> Iterator[tuple[ModelRegistry, dict[str, str]]]:
    with three_versions(tmp_path) as (registry, running):
        yield registry, {v: s.url for v, s in running.items()}


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
    # Slowness counts from 50 ms: two local servers on 2 cores differ by milliseconds at p99 (the
    # good v2 was rolled back for it, ratio 9.7-33.5, three runs in a row), and this test is about
    # the rollout's mechanics and the bad version's predictions, not latency.
    policy = RolloutPolicy(analysis_interval_s=1.0, min_requests_per_step=40, latency_floor_s=0.05)
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


def test_a_good_canary_under_cpu_load_on_its_arm_is_not_rolled_back(
    admin_api, project_base, tmp_path
):
    """A noisy neighbour: a busy loop pinned to the canary server's CPU makes every canary
    request slower than the stable's. With the policy's latency floor (slowness users notice),
    the good canary is promoted; the warm-up leaves its cold start out."""
    with three_versions(tmp_path) as (registry, running):
        servers = {v: s.url for v, s in running.items()}
        cpu = max(os.sched_getaffinity(0))
        burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for pid in (burner.pid, running["2"].process.pid):
                os.sched_setaffinity(pid, {cpu})
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
            actuator = KubernetesActuator(
                api_client=admin_api,
                name=name,
                namespace=project_base,
                storage_uri_for=lambda v: registry.version_uri(MODEL, int(v)),
                confirm_timeout_s=0,
            )
            policy = RolloutPolicy(
                analysis_interval_s=1.0, min_requests_per_step=40, latency_floor_s=0.5
            )
            with KnativeSplit(admin_api, name, project_base, servers) as split:
                actuator.start("2", policy.first_step)
                final = run_rollout(
                    model=MODEL,
                    actuator=actuator,
                    source_for=lambda st: ScrapeSource(
                        servers[st.stable_version], servers[st.canary_version]
                    ),
                    policy=policy,
                    log=DecisionLog(tmp_path / "decisions.jsonl"),
                )
            assert final.action == "promote", final.reason
            assert split.failures == []
        finally:
            burner.kill()
            burner.wait()
