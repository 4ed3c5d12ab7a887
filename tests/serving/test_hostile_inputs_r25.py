"""Probes of issue 25 against a real `mlops serve` (no token, access log on), over real HTTP:

- a control character in the model name of the URL cannot forge a log line;
- the start-up log warns that the write endpoints are open;
- +-1e308 feature values cannot turn the feature statistics into NaN/+Inf for good;
- `/drift?history=abc` answers about `history`;
- a feedback batch of 10,000 unknown ids gets a bounded answer: a count and a few of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_core.churn_data import CHURN_SCHEMA
from serving.v1_instances import v1_instances
from tests.serving.harness import (
    MODEL,
    RegisteredModels,
    RunningServer,
    scoring_frame,
    start_server,
    stop_server,
)

PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def open_server(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("open") / "server.log"
    args = ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"]
    running = start_server(args, {"MLOPS_ACCESS_LOG": "true", "MLOPS_API_TOKEN": ""}, log)
    yield running
    assert stop_server(running) == 0, log.read_text()


def _log_lines(server: RunningServer) -> list[str]:
    time.sleep(0.5)  # the access line is written after the answer
    return server.log.read_text(errors="replace").splitlines()


def test_a_newline_in_the_model_name_cannot_forge_a_log_line(open_server: RunningServer) -> None:
    forged = "FORGED 2026-01-01 00:00:00 kserve ERROR admin logged in"
    body = {"instances": v1_instances(scoring_frame(1))}
    for path, method in (
        (f"/v1/models/x%0A{forged}:predict", "POST"),
        (f"/v2/models/x%0D%0A{forged}/infer", "POST"),
        (f"/v1/models/x%0A{forged}", "GET"),
        (f"/v1/models/{MODEL}%0A{forged}/feedback", "POST"),
    ):
        r = httpx.request(method, open_server.url + path.replace(" ", "%20"), json=body)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert "\n" not in r.text and "\r" not in r.text
    lines = _log_lines(open_server)
    assert not [line for line in lines if line.startswith("FORGED")], lines[-20:]
    assert any("\\x0a" + forged in line for line in lines), lines[-20:]  # shown, escaped


def test_the_start_up_log_warns_that_write_endpoints_are_open(open_server: RunningServer) -> None:
    # The start-up INFO line mentions it in short; the warning is its own line, at WARNING.
    warning = [line for line in _log_lines(open_server) if "are open to anyone" in line]
    assert warning and "WARNING" in warning[0] and "MLOPS_API_TOKEN" in warning[0], warning


def _feature_sums(server: RunningServer, feature: str) -> list[float]:
    text = httpx.get(f"{server.url}/metrics").text
    found = []
    for family in text_string_to_metric_families(text):
        if family.name in ("mlops_feature_value", "mlops_feature_value_squares"):
            for sample in family.samples:
                if sample.labels.get("feature") == feature and not sample.name.endswith("_count"):
                    found.append(sample.value)
    return found


def test_huge_feature_values_leave_the_statistics_finite(open_server: RunningServer) -> None:
    feature = next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)
    frame = scoring_frame(4, seed=8)
    frame[feature] = frame[feature].astype(float)
    frame.loc[0, feature], frame.loc[1, feature] = 1e308, -1e308
    r = httpx.post(open_server.url + PREDICT, json={"instances": v1_instances(frame)})
    assert r.status_code in (200, 400), r.text
    ordinary = scoring_frame(20, seed=9)
    assert httpx.post(
        open_server.url + PREDICT, json={"instances": v1_instances(ordinary)}
    ).is_success
    sums = _feature_sums(open_server, feature)
    assert len(sums) == 2 and all(math.isfinite(v) for v in sums), sums


def test_drift_history_that_is_not_a_number_is_named(open_server: RunningServer) -> None:
    r = httpx.get(f"{open_server.url}/v1/models/{MODEL}/drift?history=abc")
    assert r.status_code == 400
    error = r.json()["error"]
    assert "history" in error and "abc" in error and "inputs" not in error, error


def test_feedback_errors_are_bounded_and_count_the_rest(open_server: RunningServer) -> None:
    labels = [{"request_id": f"unknown-{i:05d}", "label": 0} for i in range(10_000)]
    r = httpx.post(f"{open_server.url}/v1/models/{MODEL}/feedback", json={"labels": labels})
    assert r.status_code == 404
    assert len(r.content) < 5_000, len(r.content)  # was 1.78 MB: the whole request echoed
    doc = r.json()
    assert doc["accepted"] == 0 and doc["rejected_count"] == 10_000
    assert 0 < len(doc["rejected"]) <= 10 and "unknown-00000" in doc["rejected"][0]["error"]
    huge = {"request_id": "x" * 100_000, "label": 0}
    r = httpx.post(f"{open_server.url}/v1/models/{MODEL}/feedback", json=huge)
    assert r.status_code == 400 and len(r.content) < 1_000, len(r.content)
