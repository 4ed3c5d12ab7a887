"""The canary's Kubernetes actuator (mlops_control/traffic/kubernetes_actuator.py) against a real
kube-apiserver: its start, step-up, promote and rollback patches applied for real as the deployer
ServiceAccount, the split confirmed from a status the KServe controller would write (written here
through the status subresource, on a timer, as the controller would after reconciling), a
conflicting write (stale resourceVersion) retried, and decisions recorded as Events."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from components import isvc_traffic as patches
from components.deploy import deploy_model
from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    GROUP,
    PLURAL,
    VERSION,
    InferenceServiceSpec,
    build_inference_service,
)
from mlops_control.rollout.analysis import CanaryDecision, CheckResult
from mlops_control.traffic.actuator import ActuatorError
from mlops_control.traffic.kubernetes_actuator import KubernetesActuator
from tests.apiserver.kserve_controller_status import serverless_status, write_status

pytestmark = pytest.mark.apiserver


def storage_uri_for(version: str) -> str:
    return f"s3://mlops/models/churn/{version}"


def revision(name: str, n: int) -> str:
    return f"{name}-predictor-{n:05d}"


class Controller:
    """Writes the status KServe would write once it has reconciled a spec change, a moment after
    the change (in a thread), so the actuator's confirmation has to poll for it."""

    def __init__(self, admin_api: client.ApiClient, name: str, namespace: str) -> None:
        self.admin_api, self.name, self.namespace = admin_api, name, namespace
        self.timers: list[threading.Timer] = []

    def reconcile_later(self, *, latest: int, previous: int | None, percent: int) -> None:
        def write() -> None:
            current = client.CustomObjectsApi(self.admin_api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            write_status(
                self.admin_api,
                self.name,
                self.namespace,
                serverless_status(
                    self.name,
                    self.namespace,
                    generation=current["metadata"]["generation"],
                    latest_revision=revision(self.name, latest),
                    previous_revision=None if previous is None else revision(self.name, previous),
                    latest_percent=percent,
                ),
            )

        timer = threading.Timer(0.3, write)
        self.timers.append(timer)
        timer.start()

    def join(self) -> None:
        for timer in self.timers:
            timer.join()


@pytest.fixture
def served(deployer_api, admin_api, project_base) -> Iterator[tuple[str, str, Controller]]:
    """An InferenceService serving v1 at 100% (deployed by the deploy step, reconciled)."""
    name = f"churn-{uuid.uuid4().hex[:8]}"
    deploy_model(
        InferenceServiceSpec(
            name=name,
            namespace=project_base,
            image="mlops-platform/serving:test",
            storage_uri=storage_uri_for("v1"),
            model_name="churn",
            model_version="v1",
        ),
        api_client=deployer_api,
    )
    controller = Controller(admin_api, name, project_base)
    controller.reconcile_later(latest=1, previous=None, percent=100)
    controller.join()
    yield name, project_base, controller
    controller.join()


def actuator(api: client.ApiClient, name: str, namespace: str, **kwargs) -> KubernetesActuator:
    kwargs.setdefault("confirm_timeout_s", 30.0)
    return KubernetesActuator(
        api_client=api,
        name=name,
        namespace=namespace,
        storage_uri_for=storage_uri_for,
        poll_s=0.05,
        **kwargs,
    )


def read(api: client.ApiClient, name: str, namespace: str) -> dict:
    return client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )


def test_start_step_up_and_promote(deployer_api, admin_api, served, caplog):
    name, namespace, controller = served
    act = actuator(deployer_api, name, namespace)
    caplog.set_level(logging.WARNING)

    controller.reconcile_later(latest=2, previous=1, percent=10)
    started = act.start("v2", 10)
    stored = read(admin_api, name, namespace)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert patches.storage_uri_in(stored["spec"]["predictor"]) == storage_uri_for("v2")
    annotations = stored["metadata"]["annotations"]
    assert annotations[patches.STABLE_VERSION] == "v1"
    assert annotations[patches.CANARY_VERSION] == "v2"
    assert (started.stable_version, started.canary_version) == ("v1", "v2")
    assert (started.canary_percent, started.observed_canary_percent) == (10, 10)

    controller.reconcile_later(latest=2, previous=1, percent=50)
    stepped = act.set_canary_percent(50)
    assert read(admin_api, name, namespace)["spec"]["predictor"]["canaryTrafficPercent"] == 50
    assert stepped.observed_canary_percent == 50

    controller.reconcile_later(latest=2, previous=1, percent=100)
    promoted = act.promote()
    stored = read(admin_api, name, namespace)
    # Promotion removes the field (merge patch null): the latest revision takes all traffic.
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["metadata"]["annotations"][patches.STABLE_VERSION] == "v2"
    assert patches.CANARY_VERSION not in stored["metadata"]["annotations"]
    assert (promoted.stable_version, promoted.canary_version) == ("v2", None)
    assert stored["status"]["components"]["predictor"]["latestRolledoutRevision"] == revision(
        name, 2
    )
    assert "not confirmed" not in caplog.text


def test_rollback_sends_everything_back_to_stable(deployer_api, admin_api, served):
    name, namespace, controller = served
    act = actuator(deployer_api, name, namespace)
    controller.reconcile_later(latest=2, previous=1, percent=10)
    act.start("v2", 10)

    controller.reconcile_later(latest=2, previous=1, percent=0)
    rolled_back = act.rollback()

    stored = read(admin_api, name, namespace)
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 0
    annotations = stored["metadata"]["annotations"]
    assert patches.CANARY_VERSION not in annotations
    assert annotations[patches.ROLLED_BACK_VERSION] == "v2"
    assert annotations[patches.STABLE_VERSION] == "v1"
    assert rolled_back.canary_version is None
    assert rolled_back.observed_canary_percent == 0
    # A second rollback has no canary to act on.
    with pytest.raises(ActuatorError, match="no canary is in progress"):
        act.rollback()


def test_a_split_the_controller_never_reports_is_not_confirmed(deployer_api, served, caplog):
    name, namespace, _ = served
    act = actuator(deployer_api, name, namespace, confirm_timeout_s=0.5)
    caplog.set_level(logging.WARNING)

    started = act.start("v2", 10)  # no controller: the status still describes v1's revision

    assert started.canary_percent == 10
    assert started.observed_canary_percent != 10
    assert "traffic not confirmed" in caplog.text


def test_a_conflicting_write_is_reread_and_retried(deployer_api, admin_api, served):
    """Another writer changes the object between the actuator's read and its patch: the API
    server refuses the patch (stale resourceVersion, 409) and the actuator re-reads and retries,
    keeping the other writer's change."""
    name, namespace, _ = served
    act = actuator(deployer_api, name, namespace, confirm_timeout_s=0)
    reads: list[str] = []
    real_get = act.writer.read

    def get_then_someone_else_writes() -> dict:
        current = real_get()
        reads.append(current["metadata"]["resourceVersion"])
        if len(reads) == 1:
            client.CustomObjectsApi(admin_api).patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {"team": "risk"}}}
            )
        return current

    act.writer.read = get_then_someone_else_writes  # type: ignore[method-assign]
    act.start("v2", 10)

    assert len(reads) == 2 and reads[0] != reads[1]
    stored = read(admin_api, name, namespace)
    assert stored["metadata"]["labels"]["team"] == "risk"
    assert stored["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_conflicts_beyond_the_retry_budget_fail_clearly(deployer_api, admin_api, served):
    name, namespace, _ = served
    act = actuator(deployer_api, name, namespace, confirm_timeout_s=0, max_conflict_retries=0)
    real_get = act.writer.read

    def stale_get() -> dict:
        current = real_get()
        client.CustomObjectsApi(admin_api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {"touched": "yes"}}}
        )
        return current

    act.writer.read = stale_get  # type: ignore[method-assign]
    with pytest.raises(ActuatorError, match="409"):
        act.start("v2", 10)
    assert "canaryTrafficPercent" not in read(admin_api, name, namespace)["spec"]["predictor"]


@pytest.mark.parametrize(
    ("action", "reason", "event_type"),
    [("promote", "CanaryPromoted", "Normal"), ("rollback", "CanaryRolledBack", "Warning")],
)
def test_decisions_are_recorded_as_events(admin_api, served, action, reason, event_type):
    """As an operator running `mlops canary` with their own kubeconfig (whether the in-cluster
    deployer account may create Events is test_apiserver_rbac's concern)."""
    name, namespace, controller = served
    act = actuator(admin_api, name, namespace)
    controller.reconcile_later(latest=2, previous=1, percent=10)
    status = act.start("v2", 10)
    decision = CanaryDecision(
        action=action,
        reason=f"{action}: error rate 0.1% vs 0.1%, p-value 0.62",
        canary_percent=100 if action == "promote" else 0,
        previous_percent=10,
        checks=(CheckResult(name="error_rate", status="pass", reason="no difference"),),
    )

    act.record(decision, status)

    isvc = read(admin_api, name, namespace)
    events = client.CoreV1Api(admin_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}"
    )
    [event] = [e for e in events.items if e.reason == reason]
    assert event.type == event_type
    assert event.message == decision.reason
    assert event.involved_object.kind == "InferenceService"
    assert event.involved_object.uid == isvc["metadata"]["uid"]
    last = json.loads(isvc["metadata"]["annotations"][patches.LAST_DECISION])
    assert last["action"] == action
    assert last["checks"] == {"error_rate": "pass"}


def test_standard_mode_canary_entry_is_accepted_by_the_crd_and_promotes_by_name(
    deployer_api, admin_api, project_base
):
    """KServe Standard mode (spec.canary, a named predictor): the writer's patches are stored by
    the real CRD's structural schema as written (nothing pruned), and the deploy step starts the
    canary through the same writer. Promotion retargets predictor.name; rollback drops the entry."""
    for ending in ("promote", "rollback"):
        name = f"churn-{uuid.uuid4().hex[:8]}"
        body = build_inference_service(
            InferenceServiceSpec(
                name=name,
                namespace=project_base,
                image="mlops-platform/serving:test",
                storage_uri=storage_uri_for("1"),
                model_name="churn",
                model_version="1",
            )
        )
        body["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Standard"
        patches.InferenceServiceWriter(deployer_api, name, project_base).create(body)
        spec_v2 = InferenceServiceSpec(
            name=name,
            namespace=project_base,
            image="mlops-platform/serving:test",
            storage_uri=storage_uri_for("2"),
            model_name="churn",
            model_version="2",
        )
        assert deploy_model(spec_v2, api_client=deployer_api, canary_percent=10).action == "canary"
        stored = read(admin_api, name, project_base)
        entry = stored["spec"]["canary"][0]
        assert entry["trafficPercent"] == 10 and entry["predictor"]["name"] == "v2"
        assert patches.storage_uri_in(entry["predictor"]) == storage_uri_for("2")
        assert patches.storage_uri_in(stored["spec"]["predictor"]) == storage_uri_for("1")

        act = actuator(deployer_api, name, project_base, confirm_timeout_s=0)
        status = act.set_canary_percent(25)
        assert (status.stable_version, status.canary_version, status.canary_percent) == (
            "1",
            "2",
            25,
        )
        assert read(admin_api, name, project_base)["spec"]["canary"][0]["trafficPercent"] == 25
        (act.promote if ending == "promote" else act.rollback)()
        stored = read(admin_api, name, project_base)
        assert "canary" not in stored["spec"]
        predictor = stored["spec"]["predictor"]
        if ending == "promote":
            assert predictor["name"] == "v2" and predictor["maxReplicas"] == 2
            assert patches.storage_uri_in(predictor) == storage_uri_for("2")
            assert stored["metadata"]["annotations"][patches.STABLE_VERSION] == "2"
        else:
            assert "name" not in predictor
            assert patches.storage_uri_in(predictor) == storage_uri_for("1")
            assert stored["metadata"]["annotations"][patches.ROLLED_BACK_VERSION] == "2"
