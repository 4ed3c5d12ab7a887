"""Requests by entity key: the real model server (`mlops serve`) fetches the features from a real
Feast feature server (`feast serve`) over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from components.feature_store import (
    FeatureStoreConfig,
    apply_definitions,
    materialize,
    online_features,
    write_tables,
)
from mlops_control.traffic.model_server_process import free_port
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP, generate_churn_tables
from mlops_demo import feature_serving
from serving.request_validation import v2_datatype
from tests.serving.harness import (
    MODEL,
    RegisteredModels,
    RunningServer,
    start_server,
    stop_server,
)

pytest.importorskip("feast", reason="the feature server needs the features extra (feast)")
pytestmark = pytest.mark.slow
PREDICT = f"/v1/models/{MODEL}:predict"
INFER = f"/v2/models/{MODEL}/infer"
STALE = [100_003, 100_004]  # customers whose latest activity is ~70 days old (TTL: 45 days)


@pytest.fixture(scope="module")
def feature_repo(tmp_path_factory: pytest.TempPathFactory) -> FeatureStoreConfig:
    now = datetime.now(UTC)
    tables = generate_churn_tables(300, seed=21, start=now - timedelta(days=70))
    activity = tables.customer_activity
    old = activity[ENTITY_KEY].isin(STALE) & (
        activity.groupby(ENTITY_KEY).cumcount() > 0  # keep only their first snapshot
    )
    tables = type(tables)(
        labels=tables.labels,
        customer_profile=tables.customer_profile,
        customer_activity=activity[~old].reset_index(drop=True),
        flat=tables.flat,
    )
    config = FeatureStoreConfig(repo_path=str(tmp_path_factory.mktemp("feature-repo")))
    write_tables(config, tables)
    apply_definitions(config)
    materialize(config, now - timedelta(days=120), now)
    return config


@pytest.fixture(scope="module")
def feature_server(
    feature_repo: FeatureStoreConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with feature_serving.feature_server(feature_repo, tmp_path_factory.mktemp("feast-log")) as url:
        yield url


def _server(registered: RegisteredModels, feature_url: str, log: Path) -> RunningServer:
    return start_server(
        ["--model", MODEL, "--registry", registered.registry_uri, "--version", "champion"],
        {"MLOPS_FEATURE_SERVER_URL": feature_url, "MLOPS_AUDIT_DIR": str(log.parent / "audit")},
        log,
    )


@pytest.fixture(scope="module")
def keyed_server(
    registered: RegisteredModels, feature_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = _server(registered, feature_server, tmp_path_factory.mktemp("logs") / "server.log")
    yield running
    assert stop_server(running) == 0, running.log.read_text()


def _predict(server: RunningServer, rows: list[dict]) -> httpx.Response:
    return httpx.post(server.url + PREDICT, json={"instances": rows}, timeout=30)


def test_a_key_only_request_is_answered_with_the_online_values(
    keyed_server: RunningServer, feature_repo: FeatureStoreConfig
) -> None:
    ids = [100_010, 100_011, 100_012]
    r = _predict(keyed_server, [{ENTITY_KEY: i} for i in ids])
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 3
    used = pd.DataFrame(body["features_used"])
    assert list(used[ENTITY_KEY]) == ids
    online = online_features(feature_repo, ids)
    for column in CHURN_SCHEMA.feature_names:
        a, b = used[column], online[column]
        if CHURN_SCHEMA.feature(column).is_numeric:
            a, b = a.astype(float), b.astype(float)
        assert ((a == b) | (a.isna() & b.isna())).all(), column
    # The same values sent as full rows give the same predictions: these values were scored.
    rows = [{k: v for k, v in row.items() if k != ENTITY_KEY} for row in body["features_used"]]
    full = _predict(keyed_server, rows)
    assert full.status_code == 200, full.text
    assert "features_used" not in full.json()
    assert full.json()["predictions"] == body["predictions"]


def test_an_unknown_customer_is_a_404_naming_it_and_the_server_keeps_serving(
    keyed_server: RunningServer,
) -> None:
    r = _predict(keyed_server, [{ENTITY_KEY: 100_010}, {ENTITY_KEY: 987_654}])
    assert r.status_code == 404, r.text
    assert "987654" in r.json()["error"] and "100010" not in r.json()["error"]
    again = _predict(keyed_server, [{ENTITY_KEY: 100_020}])
    assert again.status_code == 200, again.text


def test_a_stale_feature_is_a_400_naming_it(keyed_server: RunningServer) -> None:
    r = _predict(keyed_server, [{ENTITY_KEY: STALE[0]}])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "stale" in error and "'tenure_months'" in error and str(STALE[0]) in error
    assert "TTL of 45.0 days" in error


def test_rows_by_key_and_full_rows_are_not_mixed(keyed_server: RunningServer) -> None:
    full = generate_churn_tables(1, seed=2).flat.drop(
        columns=[ENTITY_KEY, EVENT_TIMESTAMP, CHURN_SCHEMA.target]
    )
    r = _predict(keyed_server, [{ENTITY_KEY: 100_010}, full.to_dict("records")[0]])
    assert r.status_code == 400, r.text
    assert "instances[0] carries only the key 'customer_id'" in r.json()["error"]


def test_a_request_over_the_row_limit_is_refused_before_any_lookup(
    keyed_server: RunningServer,
) -> None:
    # 987654 is unknown: a lookup would answer 404; the row limit (1000) answers first.
    r = _predict(keyed_server, [{ENTITY_KEY: 987_654}] * 1001)
    assert r.status_code == 400, r.text
    assert "over this server's limit of 1000 rows" in r.json()["error"]


def test_an_unreachable_feature_server_is_a_502(
    registered: RegisteredModels, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    running = _server(registered, dead, tmp_path / "server.log")
    try:
        r = _predict(running, [{ENTITY_KEY: 100_010}])
        assert r.status_code == 502, r.text
        assert dead in r.json()["error"]
        v2 = _infer(running, [_key_tensor([100_010])])
        assert v2.status_code == 502, v2.text
        assert dead in v2.json()["error"]
    finally:
        assert stop_server(running) == 0, running.log.read_text()


def test_the_model_server_does_not_import_feast() -> None:
    code = (
        "import sys, serving.server, serving.predictor, serving.feature_lookup; "
        "sys.exit('feast' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_the_looked_up_values_are_in_the_prediction_log_and_mlops_audit_prints_them(
    keyed_server: RunningServer, registered: RegisteredModels
) -> None:
    r = httpx.post(
        keyed_server.url + PREDICT,
        json={"instances": [{ENTITY_KEY: 100_030}]},
        headers={"x-request-id": "by-key-audit-1"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    (used,) = r.json()["features_used"]
    audit_dir = keyed_server.log.parent / "audit"
    deadline = time.monotonic() + 10  # the log line is written after the answer
    while time.monotonic() < deadline and "by-key-audit-1" not in _log_text(audit_dir):
        time.sleep(0.2)
    (line,) = [json.loads(x) for x in _log_text(audit_dir).splitlines() if "by-key-audit-1" in x]
    assert line["features_used"] == [used]
    assert used[ENTITY_KEY] == 100_030 and set(CHURN_SCHEMA.feature_names) <= set(used)
    mlops = str(Path(sys.executable).with_name("mlops"))
    out = subprocess.run(
        [mlops, "audit", "by-key-audit-1", "--audit-dir", str(audit_dir),
         "--registry", registered.registry_uri],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"feature values looked up: {json.dumps(used)}" in out.stdout, out.stdout
    # a request with full rows records no looked-up values
    rows = [{k: v for k, v in used.items() if k != ENTITY_KEY}]
    full = httpx.post(
        keyed_server.url + PREDICT,
        json={"instances": rows},
        headers={"x-request-id": "full-rows-audit-1"},
        timeout=30,
    )
    assert full.status_code == 200, full.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "full-rows-audit-1" not in _log_text(audit_dir):
        time.sleep(0.2)
    (plain,) = [
        json.loads(x) for x in _log_text(audit_dir).splitlines() if "full-rows-audit-1" in x
    ]
    assert "features_used" not in plain


def _log_text(audit_dir: Path) -> str:
    return "".join(p.read_text() for p in sorted(audit_dir.glob("predictions*.jsonl")))


def test_concurrent_lookups_share_calls_and_an_unknown_key_fails_only_its_request(
    feature_server: str, feature_repo: FeatureStoreConfig
) -> None:
    from serving.feature_lookup import FeatureSource, UnknownEntityError

    ids = [100_040 + i for i in range(20)]
    source = FeatureSource(feature_server, CHURN_SCHEMA.feature_names)

    async def many() -> list[Any]:
        first = await source.fetch([ids[0]])  # alone: straight out, one call
        assert source.calls == 1
        return [first] + await asyncio.gather(
            *(source.fetch([i]) for i in ids[1:]),
            source.fetch([ids[1], 987_654]),
            return_exceptions=True,
        )

    answers = asyncio.run(many())
    # 20 more requests while one call at a time goes out: they shared calls
    assert 2 <= source.calls < 1 + 20, source.calls
    assert isinstance(answers[-1], UnknownEntityError) and "987654" in str(answers[-1])
    online = online_features(feature_repo, ids).set_index(ENTITY_KEY)
    for i, answer in zip(ids, answers[:-1], strict=True):
        assert not isinstance(answer, BaseException), answer
        assert list(answer) == [i]
        got = answer[i].values
        for name in CHURN_SCHEMA.feature_names:
            want = online.loc[i, name]
            assert got[name] == want or (got[name] is None and pd.isna(want)), (i, name)


def test_explain_takes_rows_by_key_too(keyed_server: RunningServer) -> None:
    ids = [100_050, 100_051]
    r = httpx.post(
        keyed_server.url + f"/v1/models/{MODEL}:explain",
        json={"instances": [{ENTITY_KEY: i} for i in ids]},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["explanations"]) == 2
    predicted = _predict(keyed_server, [{ENTITY_KEY: i} for i in ids]).json()
    assert body["features_used"] == predicted["features_used"]
    unknown = httpx.post(
        keyed_server.url + f"/v1/models/{MODEL}:explain",
        json={"instances": [{ENTITY_KEY: 987_654}]},
        timeout=60,
    )
    assert unknown.status_code == 404, unknown.text


# --- V2 (Open Inference Protocol): the key as an input tensor -----------------------------------
def _infer(
    server: RunningServer, inputs: list[dict[str, Any]], request_id: str | None = None
) -> httpx.Response:
    headers = {"x-request-id": request_id} if request_id else {}
    return httpx.post(server.url + INFER, json={"inputs": inputs}, headers=headers, timeout=30)


def _key_tensor(ids: list[Any], datatype: str = "INT64") -> dict[str, Any]:
    return {"name": ENTITY_KEY, "shape": [len(ids)], "datatype": datatype, "data": ids}


def _outputs(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {o["name"]: o for o in response.json()["outputs"]}


def _used_rows(response: httpx.Response) -> list[dict[str, Any]]:
    """The `features_used` output: one JSON object per row."""
    out = _outputs(response)["features_used"]
    assert out["datatype"] == "BYTES" and out["shape"] == [len(out["data"])]
    return [json.loads(row) for row in out["data"]]


def _full_row_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "shape": [len(rows)], "datatype": v2_datatype(f),
         "data": [row[f.name] for row in rows]}
        for f in CHURN_SCHEMA.features
    ]  # fmt: skip


def test_a_v2_key_only_request_scores_the_online_values_like_a_full_row_request(
    keyed_server: RunningServer, feature_repo: FeatureStoreConfig
) -> None:
    ids = [100_010, 100_011, 100_012]
    r = _infer(keyed_server, [_key_tensor(ids)])
    assert r.status_code == 200, r.text
    used = _used_rows(r)
    assert [row[ENTITY_KEY] for row in used] == ids
    online = online_features(feature_repo, ids)
    got = pd.DataFrame(used)
    for column in CHURN_SCHEMA.feature_names:
        a, b = got[column], online[column]
        if CHURN_SCHEMA.feature(column).is_numeric:
            a, b = a.astype(float), b.astype(float)
        assert ((a == b) | (a.isna() & b.isna())).all(), column
    # V1 by key fetched the same values
    assert _predict(keyed_server, [{ENTITY_KEY: i} for i in ids]).json()["features_used"] == used
    # the same values sent as full rows: the same prediction, and no features_used output
    full = _infer(keyed_server, _full_row_inputs(used))
    assert full.status_code == 200, full.text
    assert "features_used" not in _outputs(full)
    for name in ("probability", "label"):
        assert _outputs(full)[name]["data"] == _outputs(r)[name]["data"], name


def test_a_feature_sent_with_the_v2_key_is_scored_instead_of_the_stored_one(
    keyed_server: RunningServer,
) -> None:
    ids = [100_013, 100_014]
    stored = _used_rows(_infer(keyed_server, [_key_tensor(ids)]))
    tenure = {"name": "tenure_months", "shape": [2], "datatype": "INT64", "data": [1, 70]}
    r = _infer(keyed_server, [_key_tensor(ids), tenure])
    assert r.status_code == 200, r.text
    used = _used_rows(r)
    assert [row["tenure_months"] for row in used] == [1, 70]
    assert [{**row, "tenure_months": 0} for row in used] == [
        {**row, "tenure_months": 0} for row in stored
    ]  # every other value is the store's
    full = _infer(keyed_server, _full_row_inputs(used))
    assert _outputs(full)["probability"]["data"] == _outputs(r)["probability"]["data"]


def test_a_v2_unknown_customer_is_a_404_naming_it_and_the_server_keeps_serving(
    keyed_server: RunningServer,
) -> None:
    r = _infer(keyed_server, [_key_tensor([100_010, 987_654])])
    assert r.status_code == 404, r.text
    assert "customer_id 987654" in r.json()["error"] and "100010" not in r.json()["error"]
    again = _infer(keyed_server, [_key_tensor([100_020])])
    assert again.status_code == 200, again.text


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            _key_tensor([100_010.5], "FP64"),
            "'customer_id' has datatype FP64; send the keys as INT64",
        ),
        (_key_tensor([100_010, None]), "'customer_id' (row 1): expected a whole number, got null"),
        ({**_key_tensor([100_010]), "shape": [2]}, "declares shape [2] but holds 1 values"),
        # 987654 is unknown: a lookup would answer 404; the row limit (1000) answers first
        (_key_tensor([987_654] * 1001), "over this server's limit of 1000 rows"),
    ],
)
def test_a_malformed_v2_key_tensor_is_a_400_naming_the_problem(
    keyed_server: RunningServer, key: dict[str, Any], message: str
) -> None:
    r = _infer(keyed_server, [key])
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


def test_the_v2_looked_up_values_are_in_the_prediction_log(keyed_server: RunningServer) -> None:
    r = _infer(keyed_server, [_key_tensor([100_031])], request_id="v2-by-key-audit-1")
    assert r.status_code == 200, r.text
    used = _used_rows(r)
    audit_dir = keyed_server.log.parent / "audit"
    deadline = time.monotonic() + 10  # the log line is written after the answer
    while time.monotonic() < deadline and "v2-by-key-audit-1" not in _log_text(audit_dir):
        time.sleep(0.2)
    lines = [json.loads(x) for x in _log_text(audit_dir).splitlines() if "v2-by-key-audit-1" in x]
    assert [line["features_used"] for line in lines] == [used]
