"""An image-only rollout in KServe's Standard mode (same model, new serving image), through the one
traffic-state writer (components/isvc_traffic.py), checked against the rules of KServe's
InferenceService webhook at the pinned source (pkg/apis/serving/v1beta1/
inference_service_validation.go): a canary may not be named like the stable predictor
(validateCanarySpecs), and an update may not rename the stable predictor without changing its
model (validatePredictorNameChange). The rules are read from the source below, then applied to
every object the writer produces here.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import isvc_traffic as p
from components.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    InferenceServiceSpec,
    build_inference_service,
)
from tests.upstream import kserve_file

STD = p.MODES["standard"]
URI = "s3://mlpipeline/registry/churn/versions/3"


def kserve_validation() -> str:
    return kserve_file("pkg/apis/serving/v1beta1/inference_service_validation.go")


def test_the_webhook_rules_modelled_here_are_kserves() -> None:
    go = kserve_validation()
    assert "validatePredictorNameChange(isvc, oldIsvc)" in go  # on update
    body = go[go.index("func validatePredictorNameChange") :]
    body = body[: body.index("\n}\n")]
    assert "oldIsvc.Spec.Predictor.Name == newIsvc.Spec.Predictor.Name" in body
    assert "oldURI == newURI" in body and "predictor.name change requires a model change" in body
    canary = go[go.index("func validateCanarySpecs") :]
    assert "canary.Predictor.Name == isvc.Spec.Predictor.Name" in canary
    # A custom container's model is its STORAGE_URI env (CustomPredictor.GetStorageUri).
    custom = kserve_file("pkg/apis/serving/v1beta1/predictor_custom.go")
    assert "constants.CustomSpecStorageUriEnvVarKey" in custom
    constants = kserve_file("pkg/constants/constants.go")
    assert re.search(r'CustomSpecStorageUriEnvVarKey\s*=\s*"STORAGE_URI"', constants)


def webhook_refuses(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """KServe's two naming rules (read above) for an update from `old` to `new`."""
    old_pred, new_pred = old["spec"]["predictor"], new["spec"]["predictor"]
    if old_pred.get("name", "") != new_pred.get("name", "") and p.storage_uri_in(
        old_pred
    ) == p.storage_uri_in(new_pred):
        return "predictor.name change requires a model change (e.g. storageUri)"
    for entry in new["spec"].get("canary") or []:
        if entry["predictor"].get("name", "") == new_pred.get("name", ""):
            return "canary predictor.name conflicts with stable predictor name"
    return None


def served(image: str = "mlops-platform/serving:aaa", name: str | None = None) -> dict[str, Any]:
    body = build_inference_service(
        InferenceServiceSpec(
            name="churn", namespace="mlops", image=image, storage_uri=URI,
            model_name="churn", model_version="3",
        )
    )  # fmt: skip
    body["metadata"] |= {"resourceVersion": "7", "uid": "u", "generation": 1}
    body["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Standard"
    body["metadata"]["annotations"] |= p.initial_annotations("3", URI)
    if name is not None:
        body["spec"]["predictor"]["name"] = name
    return body


def new_image(isvc: dict[str, Any], image: str) -> dict[str, Any]:
    """The deploy step's predictor for the same model on another image."""
    predictor = served(image)["spec"]["predictor"]
    return STD.start_patch(isvc, "3", predictor, 10)


def apply(isvc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    after = p.merge_patch(isvc, patch)
    assert webhook_refuses(isvc, after) is None, webhook_refuses(isvc, after)
    after["metadata"]["resourceVersion"] = str(int(isvc["metadata"]["resourceVersion"]) + 1)
    return after


@pytest.mark.parametrize("stable_name", [None, "v3"], ids=["unnamed-stable", "named-v3-stable"])
def test_an_image_only_canary_starts_and_is_promoted_as_the_webhook_allows(
    stable_name: str | None,
) -> None:
    isvc = served(name=stable_name)
    started = apply(isvc, new_image(isvc, "mlops-platform/serving:bbb"))
    (entry,) = started["spec"]["canary"]
    # The canary's Deployment ({isvc}-{name}-predictor) is told from the stable's by the image.
    assert entry["predictor"]["name"] == p.canary_predictor_name("3", "mlops-platform/serving:bbb")
    assert entry["predictor"]["name"] != started["spec"]["predictor"].get("name")
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", entry["predictor"]["name"])
    assert p.image_in(entry["predictor"]) == "mlops-platform/serving:bbb"

    promoted = apply(started, STD.promote_patch(started))
    predictor = promoted["spec"]["predictor"]
    assert "canary" not in promoted["spec"]
    assert predictor.get("name") == stable_name  # kept: the model did not change
    assert p.image_in(predictor) == "mlops-platform/serving:bbb"
    assert p.storage_uri_in(predictor) == URI

    # ... and a later image-only rollout starts too (the writer refused it after a promotion).
    again = apply(promoted, new_image(promoted, "mlops-platform/serving:ccc"))
    assert p.image_in(again["spec"]["canary"][0]["predictor"]) == "mlops-platform/serving:ccc"


def test_a_model_change_still_renames_the_stable_on_promotion() -> None:
    isvc = served()
    predictor = p.with_storage_uri(p.predictor_of(isvc), URI.replace("/3", "/4"))
    started = apply(isvc, STD.start_patch(isvc, "4", predictor, 10))
    assert started["spec"]["canary"][0]["predictor"]["name"] == "v4"
    promoted = apply(started, STD.promote_patch(started))
    assert promoted["spec"]["predictor"]["name"] == "v4"


def test_the_same_model_on_the_same_image_is_refused() -> None:
    isvc = served()
    with pytest.raises(p.TrafficStateError, match="already the stable model"):
        new_image(isvc, "mlops-platform/serving:aaa")


def test_kserve_names_a_predictors_deployment_like_its_service() -> None:
    """role_pods' premise, read from the pinned source: the stable's and each canary's Deployment
    is named PredictorServiceName(isvc, predictor.name), so its pods start with that name."""
    src = kserve_file("pkg/controller/v1beta1/inferenceservice/components/predictor.go")
    assert (
        "predictorName := constants.PredictorServiceName(isvc.Name, isvc.Spec.Predictor.Name)"
        in src
    )
    assert "objectMeta := p.buildObjectMeta(isvc, predictorName," in src
    assert "canaryName := constants.PredictorServiceName(isvc.Name, canary.Predictor.Name)" in src
    assert "client.ObjectKey{Name: canaryName, Namespace: isvc.Namespace}, deploy)" in src


@pytest.mark.parametrize("stable_name", [None, "v3"], ids=["unnamed-stable", "named-v3-stable"])
def test_an_image_only_canary_is_told_from_the_stable_by_its_pods(stable_name: str | None) -> None:
    isvc = served(name=stable_name)
    assert p.role_pods(isvc) is None  # no canary
    started = apply(isvc, new_image(isvc, "mlops-platform/serving:bbb"))
    pods = p.role_pods(started)
    assert pods is not None
    canary_name = started["spec"]["canary"][0]["predictor"]["name"]
    stable_pod = f"{p.predictor_service('churn', stable_name)}-6d5f7c8b9-x2k9q"
    canary_pod = f"churn-{canary_name}-predictor-5f6d7c8b9-abcde"
    # Each pattern matches its own role's pods and not the other's (RE2 anchors like fullmatch).
    assert [bool(re.fullmatch(pods[0], pod)) for pod in (stable_pod, canary_pod)] == [True, False]
    assert [bool(re.fullmatch(pods[1], pod)) for pod in (stable_pod, canary_pod)] == [False, True]


def test_a_model_change_or_knative_needs_no_pods() -> None:
    isvc = served()
    predictor = p.with_storage_uri(p.predictor_of(isvc), URI.replace("/3", "/4"))
    started = apply(isvc, STD.start_patch(isvc, "4", predictor, 10))
    assert p.role_pods(started) is None  # v3 against v4: the version label tells them apart
    knative = served()
    knative["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] = "Knative"
    assert p.role_pods(knative) is None
