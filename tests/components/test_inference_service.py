"""The one InferenceService builder: first version at 100%, canary steps, and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from components.inference_service import (
    MODEL_VERSION_ANNOTATION,
    PREDICTOR_CONTAINER,
    InferenceServiceError,
    InferenceServiceSpec,
    build_inference_service,
    storage_uri_of,
)


def spec(**overrides: Any) -> InferenceServiceSpec:
    values: dict[str, Any] = dict(
        name="churn",
        namespace="mlops",
        image="mlops-platform/serving:abc123",
        storage_uri="s3://mlpipeline/registry/churn/versions/2",
        model_name="churn",
        model_version="2",
    )
    return InferenceServiceSpec(**(values | overrides))


def test_first_version_has_no_canary_and_serves_the_registered_uri() -> None:
    body = build_inference_service(spec())
    predictor = body["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    (container,) = predictor["containers"]
    assert container["name"] == PREDICTOR_CONTAINER
    assert container["args"] == [
        "serve", "--model-dir", "/mnt/models", "--model", "churn", "--host", "0.0.0.0"
    ]  # fmt: skip
    token = next(e for e in container["env"] if e["name"] == "MLOPS_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "mlops-serving-token", "key": "token"}
    assert storage_uri_of(body) == "s3://mlpipeline/registry/churn/versions/2"
    assert body["metadata"]["annotations"][MODEL_VERSION_ANNOTATION] == "2"
    # KServe 0.21's Standard mode: Deployments, canaries as named spec.canary entries.
    assert body["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}


def test_canary_percent_is_set_on_the_predictor() -> None:
    body = build_inference_service(spec(canary_traffic_percent=10))
    assert body["spec"]["predictor"]["canaryTrafficPercent"] == 10


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"canary_traffic_percent": 101}, "canary_traffic_percent must be 0..100"),
        ({"storage_uri": "/local/path"}, "storage_uri must be a URI"),
        ({"image": ""}, "'image' must not be empty"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas <= max_replicas"),
    ],
)
def test_bad_values_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InferenceServiceError, match=message):
        spec(**overrides)
