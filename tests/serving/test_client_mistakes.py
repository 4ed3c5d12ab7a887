"""The low-severity probes of issue 14, kept as tests against a real `mlops serve` process.

- a chunked body over the limit (no Content-Length) is a 413 naming the limit, not a 400;
- an unknown model's 404 logs one short line, not an ERROR traceback (a log-flooding vector);
- `:explain` does not copy the request's headers into its response;
- GET on a prediction route is 405 with `Allow: POST`, not a 404 for a model "churn:predict";
- a JSON string body is valid JSON of the wrong kind, not "malformed JSON";
- a V2 INT64 input holding 3.7 is refused, naming the input and the datatype.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RunningServer, scoring_frame
from tests.serving.test_bad_requests import v2_body

ROW = v1_instances(scoring_frame(1, seed=21))[0]
V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
EXPLAIN = f"/v1/models/{MODEL}:explain"
LIMIT = 65536  # the `server` fixture's MLOPS_MAX_BODY_BYTES


def _still_serving(server: RunningServer) -> None:
    r = httpx.post(server.url + V1, json={"instances": [ROW]}, timeout=30)
    assert r.status_code == 200, r.text


def _chunks(total: int) -> Iterator[bytes]:
    """A JSON-looking body sent without Content-Length (httpx streams a generator chunked)."""
    yield b'{"inputs": ['
    for _ in range(total // 8192 + 1):
        yield b" " * 8192
    yield b"]}"


@pytest.mark.parametrize("path", [V2, V1], ids=["v2", "v1"])
def test_chunked_body_over_the_limit_is_413(server: RunningServer, path: str) -> None:
    r = httpx.post(
        server.url + path,
        content=_chunks(2 * LIMIT),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert "content-length" not in r.request.headers  # really chunked
    assert r.status_code == 413, r.text
    assert f"limit of {LIMIT} bytes" in r.json()["error"]
    assert r.headers["connection"] == "close"  # the unread rest of the body is not reused
    _still_serving(server)


def _log_after(server: RunningServer, offset: int) -> str:
    time.sleep(0.5)  # the server's log lines reach the file asynchronously
    return server.log.read_bytes()[offset:].decode("utf-8", "replace")


def test_unknown_model_404_logs_one_short_line(server: RunningServer) -> None:
    before = server.log.stat().st_size
    n = 20
    for i in range(n):
        for path, body in (
            (f"/v1/models/nope-{i}:predict", {"instances": [ROW]}),
            (f"/v2/models/nope-{i}/infer", {"inputs": []}),
        ):
            r = httpx.post(server.url + path, json=body, timeout=30)
            assert r.status_code == 404 and f"nope-{i}" in r.json()["error"]
    added = _log_after(server, before)
    assert "Traceback" not in added and "ERROR" not in added, added[:2000]
    lines = [line for line in added.splitlines() if "nope-" in line]
    assert len(lines) <= 2 * n, added[:2000]  # at most one line per request
    assert all(len(line) < 300 for line in lines), lines[:3]
    # A hostile model name is cut in the log (the 404 body still names it in full).
    long_name = "x" * 5000
    before = server.log.stat().st_size
    r = httpx.post(f"{server.url}/v2/models/{long_name}/infer", json={"inputs": []}, timeout=30)
    assert r.status_code == 404
    assert len(_log_after(server, before)) < 600
    _still_serving(server)


def test_explain_does_not_echo_request_headers(server: RunningServer) -> None:
    r = httpx.post(
        server.url + EXPLAIN,
        json={"instances": [ROW]},
        headers={"x-probe-secret": "hunter2", "cookie": "session=abc"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert "x-probe-secret" not in r.headers and "set-cookie" not in r.headers
    assert "cookie" not in r.headers and "user-agent" not in r.headers and "host" not in r.headers
    assert "hunter2" not in str(r.headers)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-model-version"] == "1" and r.json()["explanations"]


@pytest.mark.parametrize("path", [V1, V2, EXPLAIN])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_on_a_prediction_route_is_405(
    server: RunningServer, path: str, method: str
) -> None:
    r = httpx.request(method, server.url + path, timeout=30)
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "POST"
    assert "takes POST" in r.json()["error"] and method in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "kind", "field"),
    [
        (V1, '"hello"', "a string", "instances"),
        (V2, '"hello"', "a string", "inputs"),
        (EXPLAIN, '"hello"', "a string", "instances"),
        (V1, "[1, 2]", "an array", "instances"),
        (V2, "[1, 2]", "an array", "inputs"),
        (V2, "42", "a number", "inputs"),
    ],
)
def test_valid_json_of_the_wrong_kind_is_not_called_malformed(
    server: RunningServer, path: str, body: str, kind: str, field: str
) -> None:
    r = httpx.post(
        server.url + path,
        content=body.encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert "malformed" not in message
    assert f"valid JSON but {kind}" in message and f"'{field}'" in message


def test_v2_integer_input_refuses_a_fraction(server: RunningServer) -> None:
    inputs = v2_body(ROW, tenure_months={"data": [3.7]})
    assert next(i for i in inputs["inputs"] if i["name"] == "tenure_months")["datatype"] == "INT64"
    r = httpx.post(server.url + V2, json=inputs, timeout=30)
    assert r.status_code == 400, r.text
    message = r.json()["error"]
    assert "'tenure_months'" in message and "INT64" in message and "3.7" in message
    # A whole number written as a float is still a whole number.
    r = httpx.post(server.url + V2, json=v2_body(ROW, tenure_months={"data": [3.0]}), timeout=30)
    assert r.status_code == 200, r.text
