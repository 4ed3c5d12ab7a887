"""/metrics moves with traffic, by version and outcome, with the documented names and labels."""

from __future__ import annotations

from datetime import datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mlops_core.registry import ModelRegistry
from serving.v1_instances import v1_instances
from tests.serving.harness import MODEL, RegisteredModels, RunningServer, scoring_frame


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_rows_predictions_and_features(
    server: RunningServer, registered: RegisteredModels
) -> None:
    v = str(registered.xgboost_version)
    base = {"model": MODEL, "version": v}
    before = scrape(server.url)
    df = scoring_frame(7, seed=31)
    rows = v1_instances(df)
    for _ in range(3):
        assert httpx.post(
            f"{server.url}/v1/models/{MODEL}:predict", json={"instances": rows}
        ).is_success
    bad = httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json={"instances": []})
    assert bad.status_code == 400
    assert httpx.post(
        f"{server.url}/v1/models/{MODEL}:explain", json={"instances": rows[:2]}
    ).is_success
    after = scrape(server.url)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    req = "mlops_requests_total"
    assert delta(req, **base, protocol="v1", endpoint="predict", outcome="2xx") == 3
    assert delta(req, **base, protocol="v1", endpoint="predict", outcome="4xx") == 1
    assert delta(req, **base, protocol="v1", endpoint="explain", outcome="2xx") == 1
    assert delta(req, **base, protocol="v1", endpoint="predict", outcome="5xx") == 0
    assert (
        delta("mlops_request_duration_seconds_count", **base, protocol="v1", endpoint="predict")
        == 4
    )
    assert delta("mlops_request_rows_count", **base) == 3  # successful predictions only
    assert delta("mlops_request_rows_sum", **base) == 21
    assert delta("mlops_prediction_probability_count", **base) == 21
    assert delta("mlops_prediction_probability_bucket", **base, le="+Inf") == 21
    assert delta("mlops_prediction_probability_bucket", **base, le="1.0") == 21
    tenure = df["tenure_months"].to_numpy(float)
    assert delta("mlops_feature_value_count", **base, feature="tenure_months") == 21
    assert delta("mlops_feature_value_sum", **base, feature="tenure_months") == 3 * tenure.sum()
    missing = int(df["avg_session_minutes"].isna().sum())
    assert (
        delta("mlops_feature_missing_total", **base, feature="avg_session_minutes") == 3 * missing
    )
    contracts = df["contract"].value_counts()
    for contract, n in contracts.items():
        got = delta("mlops_feature_category_total", **base, feature="contract", category=contract)
        assert got == 3 * n


def test_metrics_are_labelled_by_the_served_version(
    server: RunningServer, mnt_models_server: RunningServer, registered: RegisteredModels
) -> None:
    rows = v1_instances(scoring_frame(2, seed=32))
    for url in (server.url, mnt_models_server.url):
        assert httpx.post(f"{url}/v1/models/{MODEL}:predict", json={"instances": rows}).is_success
    stable, other = scrape(server.url), scrape(mnt_models_server.url)
    key = {"model": MODEL, "protocol": "v1", "endpoint": "predict", "outcome": "2xx"}
    assert value(stable, "mlops_requests_total", **key, version=str(registered.xgboost_version)) > 0
    assert value(other, "mlops_requests_total", **key, version=str(registered.logistic_version)) > 0
    assert value(other, "mlops_requests_total", **key, version=str(registered.xgboost_version)) == 0


def test_metrics_export_when_the_served_version_was_registered(
    server: RunningServer, registered: RegisteredModels
) -> None:
    record = ModelRegistry(registered.registry_uri).get(MODEL, registered.xgboost_version)
    samples = scrape(server.url)
    created = value(
        samples,
        "mlops_model_created_timestamp_seconds",
        model=MODEL,
        version=str(registered.xgboost_version),
    )
    assert created == datetime.fromisoformat(record.created_at).timestamp()
