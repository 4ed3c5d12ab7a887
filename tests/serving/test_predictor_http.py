"""The predictor over real HTTP: V1, V2 (with KServe's own REST client), metadata, explain.

Every answer is checked against in-process predictions of the same registered artifact.
"""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from kserve import InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

from components.train import model_input
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.registry import ModelRegistry
from serving.request_validation import v2_datatype
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, RunningServer, scoring_frame


def in_process(registered: RegisteredModels, version: int, df) -> np.ndarray:
    pipeline = ModelRegistry(registered.registry_uri).load_model(MODEL, version)
    return pipeline.predict_proba(model_input(df, CHURN_SCHEMA))[:, 1]


def v2_inputs(df) -> list[dict[str, object]]:
    out = []
    instances = v1_instances(df)
    for f in CHURN_SCHEMA.features:
        values = [r[f.name] for r in instances]
        out.append(
            {"name": f.name, "shape": [len(values)], "datatype": v2_datatype(f), "data": values}
        )
    return out


def test_v1_rows_as_objects_and_lists_match_in_process(
    server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(25)
    expected = in_process(registered, registered.xgboost_version, df)
    objects = v1_instances(df)
    lists = [[row[n] for n in CHURN_SCHEMA.feature_names] for row in objects]
    for instances in (objects, lists):
        r = httpx.post(
            f"{server.url}/v1/models/{MODEL}:predict",
            json={"instances": instances},
            headers={"x-request-id": "req-v1-test"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        got = np.array([p["probability"] for p in body["predictions"]])
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        assert [p["label"] for p in body["predictions"]] == (expected >= 0.5).astype(int).tolist()
        assert body["model_version"] == str(registered.xgboost_version)
        assert r.headers["x-model-version"] == str(registered.xgboost_version)
        assert body["request_id"] == r.headers["x-request-id"] == "req-v1-test"


def test_request_id_is_generated_when_absent(server: RunningServer) -> None:
    df = scoring_frame(1)
    r = httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json={"instances": v1_instances(df)})
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert r.json()["request_id"] == rid


def test_v2_infer_matches_in_process(server: RunningServer, registered: RegisteredModels) -> None:
    df = scoring_frame(30, seed=8)
    expected = in_process(registered, registered.xgboost_version, df)
    r = httpx.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        json={"id": "client-id", "inputs": v2_inputs(df)},
        headers={"x-request-id": "req-v2-test"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == str(registered.xgboost_version)
    assert body["id"] == "req-v2-test" and body["parameters"]["request_id"] == "req-v2-test"
    assert r.headers["x-model-version"] == str(registered.xgboost_version)
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["probability"]["datatype"] == "FP64" and outputs["probability"]["shape"] == [30]
    np.testing.assert_allclose(outputs["probability"]["data"], expected, rtol=1e-6, atol=1e-7)
    assert outputs["label"]["data"] == (expected >= 0.5).astype(int).tolist()


def test_kserve_rest_client_v2_round_trip(
    server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(12, seed=9)
    expected = in_process(registered, registered.xgboost_version, df)
    inputs = [
        InferInput(name=i["name"], shape=i["shape"], datatype=i["datatype"], data=i["data"])
        for i in v2_inputs(df)
    ]

    async def call() -> tuple[object, dict[str, str]]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
        headers: dict[str, str] = {}
        try:
            response = await client.infer(
                server.url,
                InferRequest(model_name=MODEL, infer_inputs=inputs, request_id="kserve-client"),
                model_name=MODEL,
                response_headers=headers,
            )
        finally:
            await client.close()
        return response, headers

    response, headers = asyncio.run(call())
    # KServe's client drops model_version when parsing; the header carries it.
    assert headers["x-model-version"] == str(registered.xgboost_version)
    assert response.id == headers["x-request-id"]
    probs = next(o for o in response.outputs if o.name == "probability").as_numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)


def test_kserve_rest_client_v1_round_trip(
    server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(5, seed=10)
    expected = in_process(registered, registered.xgboost_version, df)

    async def call() -> dict:
        client = InferenceRESTClient(RESTConfig(protocol="v1", retries=0, timeout=30))
        try:
            return await client.infer(server.url, {"instances": v1_instances(df)}, model_name=MODEL)
        finally:
            await client.close()

    body = asyncio.run(call())
    got = [p["probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_metadata_lists_inputs_and_outputs(server: RunningServer) -> None:
    r = httpx.get(f"{server.url}/v2/models/{MODEL}")
    assert r.status_code == 200
    meta = r.json()
    assert meta["name"] == MODEL
    inputs = {i["name"]: i for i in meta["inputs"]}
    assert list(inputs) == CHURN_SCHEMA.feature_names
    assert inputs["contract"]["datatype"] == "BYTES"
    assert inputs["tenure_months"]["datatype"] == "INT64"
    assert inputs["avg_session_minutes"]["datatype"] == "FP64"
    assert all(i["shape"] == [-1] for i in meta["inputs"])
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "probability": "FP64",
        "label": "INT64",
    }


def test_health_endpoints(server: RunningServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{server.url}/v2/models/{MODEL}/ready").json()["ready"] is True
    assert httpx.get(f"{server.url}/v1/models/{MODEL}").json()["ready"] is True
    assert httpx.get(f"{server.url}/v2/models/nope/ready").status_code == 404


def test_explain_xgboost_contributions_sum_to_margin(
    server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(15, seed=12)
    expected = in_process(registered, registered.xgboost_version, df)
    r = httpx.post(
        f"{server.url}/v1/models/{MODEL}:explain",
        json={"instances": v1_instances(df)},
        headers={"x-request-id": "explain-1"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers.get_list("x-request-id") == ["explain-1"] == [body["request_id"]]
    assert body["method"] == "xgboost_pred_contribs"
    assert body["model_version"] == str(registered.xgboost_version)
    assert r.headers["x-model-version"] == str(registered.xgboost_version)
    log_odds = np.log(expected / (1 - expected))
    for exp, lo, p in zip(body["explanations"], log_odds, expected, strict=True):
        assert list(exp["contributions"]) == CHURN_SCHEMA.feature_names
        total = exp["bias"] + sum(exp["contributions"].values())
        assert total == pytest.approx(lo, abs=1e-4)
        assert exp["margin"] == pytest.approx(lo, abs=1e-4)
        assert exp["probability"] == pytest.approx(p, rel=1e-6)
    # Not all mass on one feature: the explanation varies across features and rows.
    contribs = np.array([list(e["contributions"].values()) for e in body["explanations"]])
    assert np.count_nonzero(np.abs(contribs).sum(axis=0) > 1e-6) >= 5


def test_mnt_models_folder_serves_logistic_regression_with_occlusion_explain(
    mnt_models_server: RunningServer, registered: RegisteredModels
) -> None:
    df = scoring_frame(10, seed=13)
    expected = in_process(registered, registered.logistic_version, df)
    r = httpx.post(
        f"{mnt_models_server.url}/v1/models/{MODEL}:predict", json={"instances": v1_instances(df)}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == str(registered.logistic_version)
    got = [p["probability"] for p in r.json()["predictions"]]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    r = httpx.post(
        f"{mnt_models_server.url}/v1/models/{MODEL}:explain", json={"instances": v1_instances(df)}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "occlusion"
    log_odds = np.log(expected / (1 - expected))
    for exp, lo in zip(body["explanations"], log_odds, strict=True):
        # Logistic regression is additive, so occlusion contributions are exact.
        assert exp["bias"] + sum(exp["contributions"].values()) == pytest.approx(lo, abs=1e-6)
        assert exp["residual"] == pytest.approx(0.0, abs=1e-6)


def test_unseen_category_policy_accepts_and_counts(mnt_models_server: RunningServer) -> None:
    row = v1_instances(scoring_frame(1, seed=14))[0] | {"payment_method": "crypto"}
    r = httpx.post(f"{mnt_models_server.url}/v1/models/{MODEL}:predict", json={"instances": [row]})
    assert r.status_code == 200, r.text
    assert 0.0 <= r.json()["predictions"][0]["probability"] <= 1.0
    metrics = httpx.get(f"{mnt_models_server.url}/metrics").text
    assert 'category="__other__",feature="payment_method"' in metrics


def test_v2_versioned_urls_serve_this_version_and_refuse_others(
    server: RunningServer, registered: RegisteredModels
) -> None:
    v = registered.xgboost_version
    r = httpx.get(f"{server.url}/v2/models/{MODEL}/versions/{v}/ready")
    assert r.status_code == 200 and r.json()["ready"] is True
    r = httpx.get(f"{server.url}/v2/models/{MODEL}", params={"model_version": str(v)})
    assert r.status_code == 200 and r.json()["name"] == MODEL
    df = scoring_frame(3, seed=15)
    r = httpx.post(
        f"{server.url}/v2/models/{MODEL}/versions/{v}/infer", json={"inputs": v2_inputs(df)}
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        f"{server.url}/v2/models/{MODEL}/versions/{v + 7}/infer", json={"inputs": v2_inputs(df)}
    )
    assert r.status_code == 404
    assert f"version {v}, not '{v + 7}'" in r.json()["error"]
