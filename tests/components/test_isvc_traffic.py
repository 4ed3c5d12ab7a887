"""The one traffic-state writer's patches (components/isvc_traffic.py), in both KServe modes:
applied as the API server applies a JSON merge patch to the body the project's builder makes, then
read through the kserve SDK's V1beta1InferenceService model: every field survives and means what
the rollout intends.

(The writer against a real kube-apiserver, with 409 retries and Events, is in
tests/apiserver/test_apiserver_canary_actuator.py.)
"""

from __future__ import annotations

import json
from typing import Any

import kserve.models
import kubernetes.client.models
import pytest
from kserve import ApiClient, V1beta1InferenceService

from components import isvc_traffic as p
from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    MODEL_VERSION_ANNOTATION,
    InferenceServiceSpec,
    build_inference_service,
)
from mlops_control.rollout.analysis import CanaryDecision, CheckResult
from mlops_control.traffic.kubernetes_actuator import decision_summary


@pytest.fixture(autouse=True)
def kserve_sees_kubernetes_models(monkeypatch: pytest.MonkeyPatch) -> None:
    # kserve's models name kubernetes' (V1ObjectMeta, V1Container...) as types, but its ApiClient
    # resolves type names in kserve.models only; make the kubernetes models visible to it.
    for name in dir(kubernetes.client.models):
        if name.startswith(("V1", "V2", "Core")) and not hasattr(kserve.models, name):
            monkeypatch.setattr(
                kserve.models, name, getattr(kubernetes.client.models, name), raising=False
            )


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def as_kserve(body: dict[str, Any]) -> V1beta1InferenceService:
    """Deserialize through the SDK and check nothing was dropped on the way back."""
    api = ApiClient()
    obj = api.deserialize(_Response(body), "V1beta1InferenceService")
    assert isinstance(obj, V1beta1InferenceService)
    assert api.sanitize_for_serialization(obj) == body, "a field is not in KServe's model"
    return obj


def served(version: str = "1", uri: str = "s3://mlops/registry/churn/versions/1") -> dict[str, Any]:
    """The InferenceService as read back from the API server: the builder's body + server fields."""
    body = build_inference_service(
        InferenceServiceSpec(
            name="churn",
            namespace="mlops",
            image="mlops-platform/serving:abc",
            storage_uri=uri,
            model_name="churn",
            model_version=version,
        )
    )
    body["metadata"] |= {"resourceVersion": "1001", "uid": "0e7c-uid", "generation": 1}
    # Most tests here exercise the Serverless (Knative) writer; standard() switches an object to
    # Standard mode, the builder's default.
    body["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Serverless"
    return body


S = p.MODES["serverless"]
STD = p.MODES["standard"]


def start(isvc: dict[str, Any], version: str, uri: str, pct: int, mode: p.TrafficMode = S):
    """The start patch for a canary that is the stable predictor pointed at `uri` (the CLI's)."""
    return mode.start_patch(isvc, version, p.with_storage_uri(p.predictor_of(isvc), uri), pct)


def standard(isvc: dict[str, Any]) -> dict[str, Any]:
    isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Standard"
    return isvc


def test_start_points_the_predictor_at_the_new_model_with_the_first_step() -> None:
    isvc = served()
    patch = start(isvc, "2", "s3://mlops/registry/churn/versions/2", 10)
    assert patch["metadata"]["resourceVersion"] == "1001"  # 409 if anyone wrote in between
    after = p.merge_patch(isvc, patch)
    obj = as_kserve(after)
    pred = obj.spec.predictor
    assert pred.canary_traffic_percent == 10
    container = pred.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env["STORAGE_URI"] == "s3://mlops/registry/churn/versions/2"
    assert env["MLOPS_MODEL_NAME"] == "churn"  # the rest of the container is kept
    assert container.image == "mlops-platform/serving:abc"
    assert container.security_context.run_as_non_root is True
    ann = obj.metadata.annotations
    assert ann[MODEL_VERSION_ANNOTATION] == "2"
    assert (ann[p.STABLE_VERSION], ann[p.CANARY_VERSION]) == ("1", "2")
    assert ann[p.STABLE_STORAGE_URI] == "s3://mlops/registry/churn/versions/1"
    assert ann["serving.kserve.io/deploymentMode"] == "Serverless"


def test_step_promote_and_rollback_shapes() -> None:
    running = p.merge_patch(served(), start(served(), "2", "s3://m/churn/versions/2", 10))
    stepped = p.merge_patch(running, S.percent_patch(running, 25))
    assert as_kserve(stepped).spec.predictor.canary_traffic_percent == 25

    promoted = p.merge_patch(stepped, S.promote_patch(stepped))
    obj = as_kserve(promoted)
    assert obj.spec.predictor.canary_traffic_percent is None  # removed: latest takes 100%
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert obj.metadata.annotations[p.STABLE_VERSION] == "2"
    assert obj.metadata.annotations[p.STABLE_STORAGE_URI] == "s3://m/churn/versions/2"
    assert p.CANARY_VERSION not in obj.metadata.annotations

    rolled_back = p.merge_patch(stepped, S.rollback_patch(stepped))
    obj = as_kserve(rolled_back)
    assert obj.spec.predictor.canary_traffic_percent == 0  # all traffic to the previous revision
    assert obj.metadata.annotations[p.STABLE_VERSION] == "1"
    assert obj.metadata.annotations[p.ROLLED_BACK_VERSION] == "2"


def test_a_new_canary_after_a_rollback_keeps_the_recorded_stable() -> None:
    running = p.merge_patch(served(), start(served(), "2", "s3://m/churn/versions/2", 10))
    rolled_back = p.merge_patch(running, S.rollback_patch(running))
    again = p.merge_patch(rolled_back, start(rolled_back, "3", "s3://m/churn/versions/3", 10))
    ann = as_kserve(again).metadata.annotations
    # The spec named v2 (rolled back, 0%); the stable is still v1.
    assert (ann[p.STABLE_VERSION], ann[p.CANARY_VERSION]) == ("1", "3")
    assert ann[p.STABLE_STORAGE_URI] == "s3://mlops/registry/churn/versions/1"


def test_patches_refuse_the_wrong_state_with_a_reason() -> None:
    isvc = served()
    with pytest.raises(p.TrafficStateError, match="no canary is in progress"):
        S.promote_patch(isvc)
    with pytest.raises(p.TrafficStateError, match="no canary is in progress"):
        S.percent_patch(isvc, 50)
    running = p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 10))
    with pytest.raises(p.TrafficStateError, match="already a canary at 10%"):
        start(running, "3", "s3://m/churn/versions/3", 10)
    with pytest.raises(p.TrafficStateError, match="already the stable model"):
        start(isvc, "1", "s3://mlops/registry/churn/versions/1", 10)
    with pytest.raises(p.TrafficStateError, match=r"first step must be 1\.\.99"):
        start(isvc, "2", "s3://m/churn/versions/2", 100)


def test_the_last_decision_annotation_is_compact_json() -> None:
    decision = CanaryDecision(
        "rollback",
        "predictions: canary predictions diverge",
        0,
        10,
        (CheckResult("errors", "pass", "ok"), CheckResult("predictions", "fail", "diverge")),
    )
    isvc = served()
    after = p.merge_patch(isvc, p.decision_annotation_patch(isvc, decision_summary(decision)))
    raw = as_kserve(after).metadata.annotations[p.LAST_DECISION]
    assert " " not in raw.split('"reason"')[0]  # compact separators
    doc = json.loads(raw)
    assert doc["action"] == "rollback" and doc["percent"] == 0 and doc["from"] == 10
    assert doc["checks"] == {"errors": "pass", "predictions": "fail"}


def test_observed_split_is_read_from_the_status_traffic() -> None:
    isvc = served()
    isvc["status"] = {
        "components": {
            "predictor": {
                "latestReadyRevision": "churn-predictor-00002",
                "traffic": [
                    {
                        "revisionName": "churn-predictor-00002",
                        "percent": 25,
                        "latestRevision": True,
                        "tag": "latest",
                    },
                    {
                        "revisionName": "churn-predictor-00001",
                        "percent": 75,
                        "latestRevision": False,
                        "tag": "prev",
                    },
                ],
            }
        }
    }
    # The status shape is KServe's. Its SDK names the traffic items' type (Knative's
    # TrafficTarget) without shipping it, so the items are checked by field name.
    from kserve import V1beta1ComponentStatusSpec

    assert V1beta1ComponentStatusSpec.attribute_map["traffic"] == "traffic"
    without_items = json.loads(json.dumps(isvc))
    without_items["status"]["components"]["predictor"].pop("traffic")
    as_kserve(without_items)
    percent, traffic = S.observed(isvc)
    assert percent == 25 and len(traffic) == 2
    assert S.observed(served()) == (None, [])


def test_merge_patch_follows_rfc_7386() -> None:
    assert p.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": [1]}}) == {
        "a": {"c": 2, "d": [1]}
    }
    assert p.merge_patch({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}  # lists are replaced whole


def test_the_mode_follows_the_deployment_mode_annotation() -> None:
    assert p.mode_of(served()) is S
    assert (
        build_inference_service(
            InferenceServiceSpec(
                name="churn",
                namespace="mlops",
                image="i",
                storage_uri="s3://b/k",
                model_name="churn",
                model_version="1",
            )
        )["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION]
        == "Standard"
    )  # the builder's default
    assert (
        p.mode_of(served() | {"metadata": {"annotations": {DEPLOYMENT_MODE_ANNOTATION: "Knative"}}})
        is S
    )
    assert p.mode_of(standard(served())) is STD
    isvc = served()
    del isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION]
    assert p.mode_of(isvc) is STD  # KServe 0.21's default (constants.DefaultDeployment)
    assert p.resolve_mode("serverless", standard(served())) is S
    with pytest.raises(p.TrafficStateError, match="not a mode"):
        p.mode_of(served() | {"metadata": {"annotations": {DEPLOYMENT_MODE_ANNOTATION: "x"}}})


def test_standard_mode_canary_entry_start_step_promote_rollback() -> None:
    isvc = standard(served())
    started = p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 10, STD))
    obj = as_kserve(started)
    assert len(obj.spec.canary) == 1 and obj.spec.canary[0].traffic_percent == 10
    entry = started["spec"]["canary"][0]["predictor"]
    # What validateCanarySpecs requires: a name, no maxReplicas (fixed replicas).
    assert entry["name"] == "v2" and "maxReplicas" not in entry and "minReplicas" not in entry
    canary_env = {e.name: e.value for e in obj.spec.canary[0].predictor.containers[0].env}
    main_env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert canary_env["STORAGE_URI"] == "s3://m/churn/versions/2"
    assert main_env["STORAGE_URI"] == "s3://mlops/registry/churn/versions/1"  # stable untouched
    assert STD.canary_percent(started) == 10 and STD.canary_version(started) == "2"
    assert STD.stable_version(started) == "1"

    stepped = p.merge_patch(started, STD.percent_patch(started, 50))
    assert as_kserve(stepped).spec.canary[0].traffic_percent == 50

    promoted = p.merge_patch(stepped, STD.promote_patch(stepped))
    obj = as_kserve(promoted)
    assert obj.spec.canary is None and "canary" not in promoted["spec"]
    # Promotion retargets predictor.name; the stable's scaling is kept.
    assert obj.spec.predictor.name == "v2" and obj.spec.predictor.max_replicas == 2
    env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert env["STORAGE_URI"] == "s3://m/churn/versions/2"
    assert obj.metadata.annotations[MODEL_VERSION_ANNOTATION] == "2"
    assert obj.metadata.annotations[p.STABLE_VERSION] == "2"

    rolled_back = p.merge_patch(stepped, STD.rollback_patch(stepped))
    obj = as_kserve(rolled_back)
    assert obj.spec.canary is None
    env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert env["STORAGE_URI"] == "s3://mlops/registry/churn/versions/1"
    assert obj.metadata.annotations[p.ROLLED_BACK_VERSION] == "2"
    with pytest.raises(p.TrafficStateError, match="no canary is in progress"):
        STD.promote_patch(rolled_back)


def test_a_canary_entry_added_with_kubectl_is_recognised() -> None:
    isvc = standard(served())
    isvc["spec"]["canary"] = [{"predictor": {"name": "v7", "containers": []}, "trafficPercent": 5}]
    assert STD.canary_version(isvc) == "7" and STD.canary_percent(isvc) == 5
    assert STD.stable_version(isvc) == "1"


def test_standard_mode_confirms_from_canary_statuses() -> None:
    isvc = standard(served())
    running = p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 25, STD))
    running["status"] = {"canaryStatuses": [{"name": "v2", "ready": True, "trafficPercent": 25}]}
    obj = as_kserve(running)
    assert obj.status.canary_statuses[0].traffic_percent == 25
    assert STD.observed(running)[0] == 25 and STD.confirmed(running, 25)
    assert not STD.confirmed(running, 50) and not STD.confirmed(running, None)
    assert STD.confirmed(served(), None) and STD.confirmed(served(), 0)


def test_a_deploy_step_canary_records_the_stable_as_the_actuator_reads_it() -> None:
    # The deploy step hands the writer a whole new predictor (it may change the image too).
    isvc = served("2", "s3://m/churn/versions/2")
    isvc["metadata"]["annotations"] |= p.initial_annotations("2", "s3://m/churn/versions/2")
    built = build_inference_service(
        InferenceServiceSpec(
            name="churn",
            namespace="mlops",
            image="mlops-platform/serving:def",
            storage_uri="s3://m/churn/versions/3",
            model_name="churn",
            model_version="3",
        )
    )
    running = p.merge_patch(isvc, S.start_patch(isvc, "3", built["spec"]["predictor"], 10))
    ann = running["metadata"]["annotations"]
    assert (ann[p.STABLE_VERSION], ann[p.CANARY_VERSION]) == ("2", "3")
    assert S.canary_version(running) == "3" and S.stable_version(running) == "2"
    assert p.image_in(running["spec"]["predictor"]) == "mlops-platform/serving:def"
    as_kserve(running)
    stepped = p.merge_patch(running, S.percent_patch(running, 25))
    promoted = p.merge_patch(stepped, S.promote_patch(stepped))
    assert promoted["metadata"]["annotations"][p.STABLE_VERSION] == "3"
    assert S.canary_version(promoted) is None
    with pytest.raises(p.TrafficStateError, match="already a canary at 10%"):
        start(running, "4", "s3://m/churn/versions/4", 10)
