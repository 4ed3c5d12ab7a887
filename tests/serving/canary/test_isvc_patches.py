"""The Kubernetes actuator's InferenceService patches: applied as the API server applies a JSON
merge patch to the body the project's builder makes, then read through the kserve SDK's
V1beta1InferenceService model: every field survives and means what the rollout intends.

(The actuator against a real kube-apiserver, with 409 retries and Events, is in
tests/apiserver/test_apiserver_canary_actuator.py.)
"""

from __future__ import annotations

import json
from typing import Any

import kserve.models
import kubernetes.client.models
import pytest
from kserve import ApiClient, V1beta1InferenceService

from components.inference_service import (
    MODEL_VERSION_ANNOTATION,
    InferenceServiceSpec,
    build_inference_service,
)
from serving.canary import isvc_patches as p
from serving.canary.analysis import CanaryDecision, CheckResult
from serving.canary.kubernetes_actuator import decision_summary


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
    return body


def test_start_points_the_predictor_at_the_new_model_with_the_first_step() -> None:
    isvc = served()
    patch = p.start_patch(isvc, "2", "s3://mlops/registry/churn/versions/2", 10)
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
    running = p.merge_patch(served(), p.start_patch(served(), "2", "s3://m/churn/versions/2", 10))
    stepped = p.merge_patch(running, p.percent_patch(running, 25))
    assert as_kserve(stepped).spec.predictor.canary_traffic_percent == 25

    promoted = p.merge_patch(stepped, p.promote_patch(stepped))
    obj = as_kserve(promoted)
    assert obj.spec.predictor.canary_traffic_percent is None  # removed: latest takes 100%
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert obj.metadata.annotations[p.STABLE_VERSION] == "2"
    assert obj.metadata.annotations[p.STABLE_STORAGE_URI] == "s3://m/churn/versions/2"
    assert p.CANARY_VERSION not in obj.metadata.annotations

    rolled_back = p.merge_patch(stepped, p.rollback_patch(stepped))
    obj = as_kserve(rolled_back)
    assert obj.spec.predictor.canary_traffic_percent == 0  # all traffic to the previous revision
    assert obj.metadata.annotations[p.STABLE_VERSION] == "1"
    assert obj.metadata.annotations[p.ANNOTATION_PREFIX + "rolled-back-version"] == "2"


def test_a_new_canary_after_a_rollback_keeps_the_recorded_stable() -> None:
    running = p.merge_patch(served(), p.start_patch(served(), "2", "s3://m/churn/versions/2", 10))
    rolled_back = p.merge_patch(running, p.rollback_patch(running))
    again = p.merge_patch(
        rolled_back, p.start_patch(rolled_back, "3", "s3://m/churn/versions/3", 10)
    )
    ann = as_kserve(again).metadata.annotations
    # The spec named v2 (rolled back, 0%); the stable is still v1.
    assert (ann[p.STABLE_VERSION], ann[p.CANARY_VERSION]) == ("1", "3")
    assert ann[p.STABLE_STORAGE_URI] == "s3://mlops/registry/churn/versions/1"


def test_patches_refuse_the_wrong_state_with_a_reason() -> None:
    isvc = served()
    with pytest.raises(p.PatchError, match="no canary is in progress"):
        p.promote_patch(isvc)
    with pytest.raises(p.PatchError, match="no canary is in progress"):
        p.percent_patch(isvc, 50)
    running = p.merge_patch(isvc, p.start_patch(isvc, "2", "s3://m/churn/versions/2", 10))
    with pytest.raises(p.PatchError, match="already a canary at 10%"):
        p.start_patch(running, "3", "s3://m/churn/versions/3", 10)
    with pytest.raises(p.PatchError, match="already the stable model"):
        p.start_patch(isvc, "1", "s3://mlops/registry/churn/versions/1", 10)
    with pytest.raises(p.PatchError, match=r"first step must be 1\.\.99"):
        p.start_patch(isvc, "2", "s3://m/churn/versions/2", 100)


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
    percent, traffic = p.observed_canary_percent(isvc)
    assert percent == 25 and len(traffic) == 2
    assert p.observed_canary_percent(served()) == (None, [])


def test_merge_patch_follows_rfc_7386() -> None:
    assert p.merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": [1]}}) == {
        "a": {"c": 2, "d": [1]}
    }
    assert p.merge_patch({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}  # lists are replaced whole


def test_standard_mode_canary_list_start_step_promote_rollback() -> None:
    s = p.StandardCanary
    isvc = served()
    started = p.merge_patch(isvc, s.start_patch(isvc, "2", "s3://m/churn/versions/2", 10))
    obj = as_kserve(started)
    assert len(obj.spec.canary) == 1 and obj.spec.canary[0].traffic_percent == 10
    canary_env = {e.name: e.value for e in obj.spec.canary[0].predictor.containers[0].env}
    main_env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert canary_env["STORAGE_URI"] == "s3://m/churn/versions/2"
    assert main_env["STORAGE_URI"] == "s3://mlops/registry/churn/versions/1"  # stable untouched
    assert s.canary_percent(started) == 10

    stepped = p.merge_patch(started, s.percent_patch(started, 50))
    assert as_kserve(stepped).spec.canary[0].traffic_percent == 50

    promoted = p.merge_patch(stepped, s.promote_patch(stepped))
    obj = as_kserve(promoted)
    assert obj.spec.canary is None and "canary" not in promoted["spec"]
    env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert env["STORAGE_URI"] == "s3://m/churn/versions/2"
    assert obj.metadata.annotations[MODEL_VERSION_ANNOTATION] == "2"
    assert obj.metadata.annotations[p.STABLE_VERSION] == "2"

    rolled_back = p.merge_patch(stepped, s.rollback_patch(stepped))
    obj = as_kserve(rolled_back)
    assert obj.spec.canary is None
    env = {e.name: e.value for e in obj.spec.predictor.containers[0].env}
    assert env["STORAGE_URI"] == "s3://mlops/registry/churn/versions/1"
    with pytest.raises(p.PatchError, match="no canary is in progress"):
        s.promote_patch(rolled_back)


def test_standard_mode_confirms_from_canary_statuses() -> None:
    s = p.StandardCanary
    isvc = served()
    running = p.merge_patch(isvc, s.start_patch(isvc, "2", "s3://m/churn/versions/2", 25))
    running["status"] = {
        "canaryStatuses": [{"name": "churn-canary-0", "ready": True, "trafficPercent": 25}]
    }
    obj = as_kserve(running)
    assert obj.status.canary_statuses[0].traffic_percent == 25
    assert s.observed(running)[0] == 25 and s.confirmed(running, 25)
    assert not s.confirmed(running, 50) and not s.confirmed(running, None)
    assert s.confirmed(served(), None) and s.confirmed(served(), 0)


def test_a_canary_started_by_the_pipeline_deploy_step_is_recognised() -> None:
    # After an earlier promotion recorded v2 as stable, the deploy step puts v3 out at 10%: it
    # sets the model-version annotation and canaryTrafficPercent, not the canary annotation.
    isvc = served("2", "s3://m/churn/versions/2")
    isvc["metadata"]["annotations"][p.STABLE_VERSION] = "2"
    deployed = build_inference_service(
        InferenceServiceSpec(
            name="churn",
            namespace="mlops",
            image="mlops-platform/serving:abc",
            storage_uri="s3://m/churn/versions/3",
            model_name="churn",
            model_version="3",
            canary_traffic_percent=10,
        )
    )
    running = p.merge_patch(isvc, deployed)
    assert p.canary_version_of(running) == "3"
    stepped = p.merge_patch(running, p.percent_patch(running, 25))
    assert as_kserve(stepped).spec.predictor.canary_traffic_percent == 25
    promoted = p.merge_patch(stepped, p.promote_patch(stepped))
    assert promoted["metadata"]["annotations"][p.STABLE_VERSION] == "3"
    assert p.canary_version_of(promoted) is None
    with pytest.raises(p.PatchError, match="already a canary at 10%"):
        p.start_patch(running, "4", "s3://m/churn/versions/4", 10)
