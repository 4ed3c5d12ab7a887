"""Monitoring in a real `mlops serve` process: drift on /metrics and /drift, labels via /feedback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.jsonl_log import read_json_lines
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, RunningServer, start_server, stop_server


@pytest.fixture(scope="module")
def monitored(
    registered: RegisteredModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path]]:
    audit = tmp_path_factory.mktemp("audit")
    env = {
        "MLOPS_AUDIT_DIR": str(audit),
        "MLOPS_MONITOR_PANE_ROWS": "100",
        "MLOPS_MONITOR_PANES": "4",
        "MLOPS_MONITOR_MIN_ROWS": "200",
        "MLOPS_MONITOR_INTERVAL_S": "0.2",
    }
    log = audit / "server.log"
    running = start_server(
        ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"], env, log
    )
    yield running, audit
    assert stop_server(running) == 0, log.read_text()


def score(url: str, scenario: str, rows: int, seed: int, batch: int = 40) -> tuple[list, object]:
    df = generate_churn(rows, scenario=scenario, seed=seed)
    answers = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(0, rows, batch):
            chunk = df.iloc[i : i + batch].drop(columns=[CHURN_SCHEMA.target])
            r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": v1_instances(chunk)})
            assert r.status_code == 200, r.text
            answers.append(r.json())
    return answers, df


def test_drift_is_judged_and_exported(monitored: tuple[RunningServer, Path]) -> None:
    server, _ = monitored
    score(server.url, "covariate_shift", 400, seed=21)
    drift = httpx.get(f"{server.url}/v1/models/{MODEL}/drift", params={"history": 5}).json()
    latest = drift["latest"]["1"]
    assert latest["rows"] == 400
    assert latest["drifted"]["monthly_charges"] is True
    assert latest["drifted"]["contract"] is False
    assert drift["history"] and drift["thresholds"]["psi"] == 0.2
    text = httpx.get(f"{server.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    detected = {
        s.labels["feature"]: s.value
        for s in families["mlops_drift_detected"].samples
        if s.labels["model"] == MODEL and s.labels["version"] == "1"
    }
    assert detected["monthly_charges"] == 1.0 and detected["region"] == 0.0


def test_labels_arrive_later_and_live_accuracy_follows(
    monitored: tuple[RunningServer, Path],
) -> None:
    server, audit = monitored
    answers, df = score(server.url, "clean", 200, seed=22)
    labels, probabilities = [], []
    for a in answers:
        for row, pred in enumerate(a["predictions"]):
            labels.append({"request_id": a["request_id"], "row": row, "label": 0})
            probabilities.append(pred["probability"])
    truth = df[CHURN_SCHEMA.target].tolist()
    for item, y in zip(labels, truth, strict=True):
        item["label"] = int(y)
    r = httpx.post(f"{server.url}/v1/models/{MODEL}/feedback", json={"labels": labels})
    assert r.status_code == 200 and r.json() == {
        "accepted": 200,
        "rejected_count": 0,
        "rejected": [],
    }
    quality = httpx.get(f"{server.url}/v1/models/{MODEL}/quality").json()["versions"]["1"]
    expected = np.mean((np.array(probabilities) >= 0.5) == np.array(truth))
    assert quality["labelled"] == 200
    assert quality["accuracy"] == pytest.approx(expected)
    text = httpx.get(f"{server.url}/metrics").text
    assert f'mlops_live_accuracy{{model="{MODEL}",version="1"}} {quality["accuracy"]}' in text
    # the prediction log names every request id with the version that served it
    logged = {d["request_id"]: d for d in read_json_lines(audit / "predictions.jsonl")}
    assert {a["request_id"] for a in answers} <= set(logged)
    first = logged[answers[0]["request_id"]]
    assert first["version"] == "1" and first["revision"] == "local" and first["rows"] == 40


def test_bad_feedback_gets_a_clear_error_and_the_server_keeps_serving(
    monitored: tuple[RunningServer, Path],
) -> None:
    server, _ = monitored
    url = f"{server.url}/v1/models/{MODEL}/feedback"
    unknown = httpx.post(url, json={"request_id": "never-seen", "label": 1})
    assert unknown.status_code == 404 and "never-seen" in unknown.json()["error"]
    answers, _ = score(server.url, "clean", 1, seed=23, batch=1)
    rid = answers[0]["request_id"]
    bad = httpx.post(url, json={"request_id": rid, "label": "churned"})
    assert bad.status_code == 400 and "label must be 0 or 1" in bad.json()["error"]
    assert httpx.post(url, content=b"{not json").status_code == 400
    assert httpx.post(url, json=[1, 2]).status_code == 400
    ok = httpx.post(url, json={"request_id": rid, "label": 1})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1
    assert score(server.url, "clean", 5, seed=24, batch=5)[0][0]["model_version"] == "1"
