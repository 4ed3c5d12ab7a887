"""Every kind of bad request gets a 4xx naming the problem, and the server keeps serving."""

from __future__ import annotations

import json

import httpx
import pytest

from mlops_core.churn_data import CHURN_SCHEMA
from serving.request_validation import v2_datatype
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RunningServer, scoring_frame

ROW = v1_instances(scoring_frame(1, seed=21))[0]
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"


def v2_body(row: dict[str, object], **override: dict[str, object]) -> dict[str, object]:
    inputs = []
    for f in CHURN_SCHEMA.features:
        spec = {"name": f.name, "shape": [1], "datatype": v2_datatype(f), "data": [row[f.name]]}
        inputs.append(spec | override.get(f.name, {}))
    return {"inputs": inputs}


def raw(text: str) -> bytes:
    return text.encode()


CASES = [
    # (id, path, body (bytes or JSON-able), expected status, words the message must contain)
    ("v1-malformed-json", V1, raw('{"instances": [ {"age": 3'), 400, ["malformed JSON", "line 1"]),
    ("v1-nan-literal", V1, raw('{"instances": [[NaN]]}'), 400, ["malformed JSON", "column 17", "send null"]),
    ("v1-not-an-object", V1, [1, 2, 3], 400, ["JSON object", "instances"]),
    ("v1-no-instances", V1, {"rows": [ROW]}, 400, ["instances"]),
    ("v1-instances-not-list", V1, {"instances": "x"}, 400, ["instances", "list"]),
    ("v1-empty-batch", V1, {"instances": []}, 400, ["empty"]),
    ("v1-over-row-limit", V1, {"instances": [ROW] * 51}, 400, ["51 rows", "limit of 50"]),
    ("v1-wrong-shape", V1, {"instances": [list(ROW.values())[:10]]}, 400, ["10 values", "11"]),
    ("v1-scalar-row", V1, {"instances": [7]}, 400, ["instances[0]"]),
    ("v1-mixed-rows", V1, {"instances": [ROW, list(ROW.values())]}, 400, ["instances[1]"]),
    ("v1-wrong-type", V1, {"instances": [ROW | {"age": "forty"}]}, 400, ["'age'", "number", "str"]),
    ("v1-bool-as-number", V1, {"instances": [ROW | {"age": True}]}, 400, ["'age'", "bool"]),
    ("v1-number-as-category", V1, {"instances": [ROW | {"region": 3}]}, 400, ["'region'", "string"]),
    ("v1-null-required", V1, {"instances": [ROW | {"tenure_months": None}]}, 400, ["'tenure_months'", "required"]),
    ("v1-missing-feature", V1, {"instances": [{k: v for k, v in ROW.items() if k != "age"}]}, 400, ["lacks", "age"]),
    ("v1-unknown-field", V1, {"instances": [ROW | {"colour": "red"}]}, 400, ["unknown field", "colour"]),
    ("v1-unknown-category", V1, {"instances": [ROW | {"payment_method": "crypto"}]}, 400, ["'payment_method'", "crypto", "unknown category"]),
    ("v1-oversized-body", V1, {"instances": [ROW], "padding": "x" * 70000}, 413, ["limit of 65536 bytes"]),
    ("explain-bad-row", f"/v1/models/{MODEL}:explain", {"instances": [ROW | {"age": "x"}]}, 400, ["'age'"]),
    ("v2-malformed-json", V2, raw('{"inputs": [}'), 400, ["malformed JSON"]),
    ("v2-missing-field", V2, {"inputs": [{"name": "age", "shape": [1], "data": [3]}]}, 400, ["datatype", "Field required"]),
    ("v2-missing-input", V2, {"inputs": v2_body(ROW)["inputs"][1:]}, 400, ["lack", "tenure_months"]),
    ("v2-unknown-input", V2, {"inputs": [*v2_body(ROW)["inputs"], {"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400, ["unknown input 'x'"]),
    ("v2-wrong-datatype", V2, v2_body(ROW, contract={"datatype": "FP64"}), 400, ["'contract'", "BYTES"]),
    ("v2-string-for-number", V2, v2_body(ROW, age={"data": ["old"]}), 400, ["'age'", "number"]),
    ("v2-shape-mismatch", V2, v2_body(ROW, age={"shape": [2]}), 400, ["'age'", "rows"]),
    ("v2-bad-shape", V2, v2_body(ROW, age={"shape": [1, 3]}), 400, ["'age'", "shape"]),
    ("v2-data-length", V2, v2_body(ROW, age={"data": [1, 2]}), 400, ["'age'", "holds 2 values"]),
    ("v2-nan-required", V2, raw(json.dumps(v2_body(ROW, tenure_months={"datatype": "FP64", "data": [float("nan")]}))), 400, ["'tenure_months'", "required", "NaN"]),
    ("v2-infinity", V2, raw(json.dumps(v2_body(ROW, monthly_charges={"data": [float("inf")]}))), 400, ["'monthly_charges'", "infinite"]),
    ("v2-empty-batch", V2, {"inputs": [{**i, "shape": [0], "data": []} for i in v2_body(ROW)["inputs"]]}, 400, ["empty"]),
    ("v2-over-row-limit", V2, {"inputs": [{**i, "shape": [51], "data": i["data"] * 51} for i in v2_body(ROW)["inputs"]]}, 400, ["51 rows", "limit of 50"]),
    ("v2-unknown-category", V2, v2_body(ROW, contract={"data": ["lifetime"]}), 400, ["'contract'", "lifetime"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_request_is_refused_with_a_useful_message_then_serving_continues(
    server: RunningServer, path: str, body: object, status: int, words: list[str]
) -> None:
    if isinstance(body, bytes):
        r = httpx.post(
            server.url + path, content=body, headers={"content-type": "application/json"}
        )
    else:
        r = httpx.post(server.url + path, json=body)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert r.headers["x-model-version"] == "1"
    ok = httpx.post(server.url + V1, json={"instances": [ROW]})
    assert ok.status_code == 200, ok.text


def test_nullable_feature_accepts_null_and_nan(server: RunningServer) -> None:
    body = json.dumps(v2_body(ROW, avg_session_minutes={"data": [float("nan")]}))
    r = httpx.post(server.url + V2, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + V1, json={"instances": [ROW | {"avg_session_minutes": None}]})
    assert r.status_code == 200, r.text
