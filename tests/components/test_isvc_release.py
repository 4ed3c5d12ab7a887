"""The staged promotion and rollback (components/isvc_release.py): the KServe facts the stages
rest on, read in KServe's source at KSERVE_SOURCE_COMMIT; each stage's patch; when a stage counts
as served; and, replayed through tests/components/kserve_standin.py (those same facts), that no
route ever sends a request to a Service that is gone, where a one-write promotion or rollback does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import isvc_release as r
from components import isvc_traffic as p
from tests.components.kserve_standin import KServeStandIn, taking_traffic
from tests.components.test_isvc_traffic import STD, S, served, standard, start
from tests.upstream import go_module_dir, kserve_file, pins

HTTPROUTE = "pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/httproute_reconciler.go"
PREDICTOR = "pkg/controller/v1beta1/inferenceservice/components/predictor.go"
VALIDATION = "pkg/apis/serving/v1beta1/inference_service_validation.go"


def _flat(go: str) -> str:
    return re.sub(r"\s+", " ", go)


# --- the upstream facts ------------------------------------------------------------------------


def test_the_route_weights_only_ready_canaries_and_gives_the_stable_the_rest() -> None:
    src = _flat(kserve_file(HTTPROUTE))
    assert "routeName := constants.PredictorServiceName(isvc.Name)" in src
    assert (
        "predictorName := constants.PredictorServiceName(isvc.Name, isvc.Spec.Predictor.Name)"
        in src
    )
    assert "readyMap[cs.Name] = cs.Ready" in src  # status.canaryStatuses gates the weights (#5984)
    assert "stableWeight := int32(100) - totalReadyCanaryPercent" in src
    assert "if !readyMap[canary.Predictor.Name] { continue }" in src
    assert (
        "canaryServiceName := constants.PredictorServiceName(isvc.Name, canary.Predictor.Name)"
        in src
    )
    # The route is left as it was while the stable predictor is not Ready.
    assert "if !isvc.Status.IsConditionReady(v1beta1.PredictorReady) {" in src
    constants = _flat(kserve_file("pkg/constants/constants.go"))
    assert 'return name + "-" + predictorName[0] + "-" + string(Predictor)' in constants
    assert 'return name + "-" + string(Predictor)' in constants
    assert p.predictor_service("churn", "v2") == "churn-v2-predictor"
    assert p.predictor_service("churn", None) == p.route_name("churn") == "churn-predictor"


def test_a_retarget_or_removal_deletes_the_old_deployment_and_service_at_once() -> None:
    src = _flat(kserve_file(PREDICTOR))
    assert "expectedNames := map[string]bool{stableName: true}" in src
    assert 'p.Log.Info("Deleting orphaned predictor deployment"' in src
    assert 'p.Log.Info("Deleting orphaned predictor service"' in src
    # Canary status: ready once its Deployment has an available replica; percent from the spec.
    assert "ready = deploy.Status.AvailableReplicas > 0" in src
    assert "TrafficPercent: canary.TrafficPercent," in src
    status = _flat(kserve_file("pkg/apis/serving/v1beta1/inference_service_status.go"))
    for tag in (
        'json:"canaryStatuses,omitempty"',
        'json:"name"',
        'json:"ready"',
        'json:"trafficPercent"',
    ):
        assert tag in status


def test_a_canary_keeps_its_pods_at_zero_percent_only_with_min_replicas() -> None:
    src = _flat(kserve_file(PREDICTOR))
    assert "if canary.Predictor.MinReplicas != nil { return *canary.Predictor.MinReplicas }" in src
    assert "math.Ceil(float64(stableReplicas) * float64(canary.TrafficPercent) / 100)" in src
    validation = _flat(kserve_file(VALIDATION))
    assert "must not exceed stable predictor minReplicas" in validation
    # ...and may not share the stable's name: retarget and removal are one write.
    assert "conflicts with stable predictor name" in validation


def test_predictor_ready_is_kserves_condition_name() -> None:
    types = _flat(kserve_file("pkg/apis/serving/v1beta1/inference_service_status.go"))
    assert f'PredictorReady apis.ConditionType = "{r.PREDICTOR_READY}"' in types


def test_a_backend_refs_weight_defaults_to_one_in_gateway_api() -> None:
    api = go_module_dir("sigs.k8s.io/gateway-api", pins()["GATEWAY_API_VERSION"])
    shared = _flat((api / "apis/v1/shared_types.go").read_text())
    assert "// +kubebuilder:default=1 // +kubebuilder:validation:Minimum=0" in shared
    assert 'Weight *int32 `json:"weight,omitempty"`' in shared


def test_traefik_answers_500_for_a_missing_backend_and_never_picks_weight_zero() -> None:
    """Why a backend must be at weight 0 before it goes (the gateway, TRAEFIK_VERSION)."""
    traefik = go_module_dir("github.com/traefik/traefik/v3", pins()["TRAEFIK_VERSION"])
    routes = _flat((traefik / "pkg/provider/kubernetes/gateway/httproute.go").read_text())
    assert "weight := ptr.To(int(ptr.Deref(backendRef.Weight, 1)))" in routes
    assert "Name: svcName, Status: ptr.To(500), Weight: weight," in routes
    wrr = _flat((traefik / "pkg/server/service/loadbalancer/wrr/wrr.go").read_text())
    assert "if w <= 0 { // non-positive weight is meaningless" in wrr


# --- the stages' patches -----------------------------------------------------------------------


def _canary_at(pct: int) -> dict[str, Any]:
    isvc = standard(served())
    started = p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 10, STD))
    return p.merge_patch(started, STD.percent_patch(started, pct))


def test_promotion_shifts_everything_to_the_canary_then_retargets() -> None:
    isvc = _canary_at(50)
    shift = r.first_stage(STD, "promote")
    assert shift == r.ReleaseStage("promote", "shift")
    shifted = p.merge_patch(isvc, r.stage_patch(isvc, STD, shift))
    assert shifted["spec"]["canary"][0]["trafficPercent"] == 100
    assert shifted["spec"]["predictor"] == isvc["spec"]["predictor"]  # the stable untouched
    retarget = r.next_stage(STD, shift)
    assert retarget == r.ReleaseStage("promote", "retarget")
    promoted = p.merge_patch(shifted, r.stage_patch(shifted, STD, retarget))
    assert promoted["spec"]["predictor"]["name"] == "v2" and "canary" not in promoted["spec"]
    assert r.next_stage(STD, retarget) is None


def test_rollback_drains_the_canary_with_its_pods_kept_then_removes_it() -> None:
    isvc = _canary_at(50)
    drain = r.first_stage(STD, "rollback")
    drained = p.merge_patch(isvc, r.stage_patch(isvc, STD, drain))
    entry = drained["spec"]["canary"][0]
    assert entry["trafficPercent"] == 0
    # ≤ the stable's minReplicas (validateCanarySpecs), ≥ 1 so KServe keeps a pod up.
    assert entry["predictor"]["minReplicas"] == 1 <= drained["spec"]["predictor"]["minReplicas"]
    remove = r.next_stage(STD, drain)
    assert remove == r.ReleaseStage("rollback", "remove")
    gone = p.merge_patch(drained, r.stage_patch(drained, STD, remove))
    assert "canary" not in gone["spec"] and gone["spec"]["predictor"] == isvc["spec"]["predictor"]


def test_a_stable_scaled_to_zero_gets_no_pinned_canary() -> None:
    isvc = _canary_at(50)
    isvc["spec"]["predictor"]["minReplicas"] = 0
    drained = p.merge_patch(isvc, STD.drain_patch(isvc))
    assert "minReplicas" not in drained["spec"]["canary"][0]["predictor"]


def test_knative_mode_releases_in_one_write() -> None:
    isvc = served()
    started = p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 10, S))
    stage = r.first_stage(S, "promote")
    assert r.next_stage(S, stage) is None
    assert r.stage_patch(started, S, stage) == S.promote_patch(started)
    assert r.served(started, None, S, stage).done
    with pytest.raises(p.TrafficStateError, match="Standard-mode stage"):
        r.stage_patch(started, S, r.ReleaseStage("rollback", "drain"))


def test_a_stage_record_names_an_action_and_one_of_its_stages() -> None:
    assert r.ReleaseStage.from_dict({"action": "rollback", "stage": "drain"}).stage == "drain"
    with pytest.raises(ValueError):
        r.ReleaseStage.from_dict({"action": "rollback", "stage": "shift"})
    with pytest.raises(ValueError):
        r.ReleaseStage.from_dict({"action": "explode", "stage": "shift"})


# --- when a stage is served --------------------------------------------------------------------


def test_a_shift_is_served_once_kserve_and_the_gateway_route_the_canary_alone() -> None:
    kserve = KServeStandIn()
    isvc = kserve.reconcile(_canary_at(50))
    shift = r.first_stage(STD, "promote")
    shifted = p.merge_patch(isvc, r.stage_patch(isvc, STD, shift))
    waiting = r.served(shifted, kserve.route, STD, shift)
    assert not waiting.done and "100%" in waiting.waiting_for  # status still says 50%
    shifted = kserve.reconcile(shifted)
    assert r.served(shifted, kserve.route, STD, shift).done
    # The gateway has not yet accepted this generation of the route: not served.
    assert kserve.route is not None
    lagging = {**kserve.route, "status": {"parents": [{"conditions": [
        {"type": "Accepted", "status": "True", "observedGeneration": 1}]}]}}  # fmt: skip
    assert "generation" in r.served(shifted, lagging, STD, shift).waiting_for
    refused = {**kserve.route, "status": {"parents": [{"conditions": [
        {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound"}]}]}}  # fmt: skip
    assert "BackendNotFound" in r.served(shifted, refused, STD, shift).waiting_for
    assert "accept" in r.served(shifted, {**kserve.route, "status": {}}, STD, shift).waiting_for


def test_a_retarget_waits_for_the_new_stable_to_be_ready() -> None:
    kserve = KServeStandIn()
    isvc = kserve.reconcile(_canary_at(100))
    retarget = r.ReleaseStage("promote", "retarget")
    promoted = kserve.reconcile(p.merge_patch(isvc, r.stage_patch(isvc, STD, retarget)))
    assert r.served(promoted, kserve.route, STD, retarget).done
    not_ready = {
        **promoted,
        "status": {"conditions": [{"type": "PredictorReady", "status": "False"}]},
    }
    assert "Ready" in r.served(not_ready, kserve.route, STD, retarget).waiting_for


def test_without_a_gateway_route_the_status_decides() -> None:
    kserve = KServeStandIn()
    isvc = kserve.reconcile(_canary_at(50))
    drain = r.first_stage(STD, "rollback")
    drained = p.merge_patch(isvc, r.stage_patch(isvc, STD, drain))
    assert not r.served(drained, None, STD, drain).done
    assert r.served(kserve.reconcile(drained), None, STD, drain).done


# --- no request meets a Service that is gone ---------------------------------------------------


def _write(isvc: dict[str, Any], kserve: KServeStandIn, patch: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Apply `patch` as KServe meets it: it deletes orphans before it rewrites the route, so the
    route of the previous reconcile meets the Services of this one. Returns the object as
    reconciled and the Services routed to but gone, in that window or after."""
    before = kserve.route
    isvc = kserve.reconcile(p.merge_patch(isvc, patch))
    lost = sorted(taking_traffic(before) - kserve.services)
    lost += sorted(taking_traffic(kserve.route) - kserve.services)
    return isvc, lost


def _staged(isvc: dict[str, Any], kserve: KServeStandIn, action: r.Action) -> list[str]:
    lost: list[str] = []
    stage: r.ReleaseStage | None = r.first_stage(STD, action)
    while stage is not None:
        isvc, gone = _write(isvc, kserve, r.stage_patch(isvc, STD, stage))
        lost += gone
        assert r.served(isvc, kserve.route, STD, stage).done, stage
        stage = r.next_stage(STD, stage)
    return lost


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_staged_release_never_routes_to_a_service_that_is_gone(action: r.Action) -> None:
    kserve = KServeStandIn()
    isvc = kserve.reconcile(_canary_at(50))
    assert _staged(isvc, kserve, action) == []
    want = "churn-v2-predictor" if action == "promote" else "churn-predictor"
    assert taking_traffic(kserve.route) == kserve.services == {want}


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_one_write_release_routes_to_a_service_that_is_gone(action: r.Action) -> None:
    """What the kind test saw before the stages (10 of 1,952 requests a 500 at promotion)."""
    kserve = KServeStandIn()
    isvc = kserve.reconcile(_canary_at(50))
    one_write = STD.promote_patch(isvc) if action == "promote" else STD.rollback_patch(isvc)
    gone = "churn-predictor" if action == "promote" else "churn-v2-predictor"
    assert _write(isvc, kserve, one_write)[1] == [gone]


def test_a_broken_canary_still_rolls_back() -> None:
    """A canary whose pods never become ready is what a rollback is for: KServe routes it nothing,
    so its drain is served at once, and its removal follows."""
    kserve = KServeStandIn(ready=False)
    isvc = standard(served())
    kserve.services = {"churn-predictor"}  # the stable runs; the canary's pods never come up
    isvc = kserve.reconcile(
        p.merge_patch(isvc, start(isvc, "2", "s3://m/churn/versions/2", 10, STD))
    )
    assert isvc["status"]["canaryStatuses"][0]["ready"] is False
    assert taking_traffic(kserve.route) == {"churn-predictor"}
    assert _staged(isvc, kserve, "rollback") == []
    # ...while a promotion to it waits.
    shift = r.first_stage(STD, "promote")
    shifted = kserve.reconcile(p.merge_patch(isvc, r.stage_patch(isvc, STD, shift)))
    assert "to be ready" in r.served(shifted, kserve.route, STD, shift).waiting_for
