"""The live drift monitor: windowed sketches agree with the batch statistics, slide, export."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from components.train import model_input
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import ReferenceProfile, compare, profile_reference
from serving.monitoring.drift_monitor import PREDICTION, DriftMonitor, WindowConfig
from serving.prediction_observer import PredictionObserver

NAMES = CHURN_SCHEMA.feature_names


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    return profile_reference(
        generate_churn(20000, seed=0), CHURN_SCHEMA, predictions=rng.beta(2, 5, 20000)
    )


def monitor(reference: ReferenceProfile, **window: int) -> DriftMonitor:
    cfg = WindowConfig(**({"pane_rows": 500, "panes": 6, "min_rows": 1000} | window))
    return DriftMonitor(
        model="churn",
        feature_names=NAMES,
        references=lambda v: reference if v == "1" else None,
        window=cfg,
    )


def send(m: DriftMonitor, scenario: str, rows: int, seed: int, batch: int = 1) -> None:
    X = model_input(generate_churn(rows, scenario=scenario, seed=seed), CHURN_SCHEMA)
    p = np.random.default_rng(seed).beta(2, 5, rows)
    for i in range(0, rows, batch):
        m.observe(X[i : i + batch], p[i : i + batch], f"req-{seed}-{i}", "1")


def test_the_monitor_is_a_prediction_observer(reference: ReferenceProfile) -> None:
    assert isinstance(monitor(reference), PredictionObserver)


def test_window_statistics_equal_the_batch_comparison(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    df = generate_churn(2500, scenario="covariate_shift", seed=3)
    p = np.random.default_rng(3).beta(2, 5, 2500)
    X = model_input(df, CHURN_SCHEMA)
    for i in range(0, 2500, 7):  # uneven batches across pane boundaries
        m.observe(X[i : i + 7], p[i : i + 7], f"r{i}", "1")
    live = m.evaluate()["1"]
    batch = compare(reference, CHURN_SCHEMA.coerce_frame(df), predictions=p)
    assert live.rows == 2500
    for a, b in zip(live.features, batch.features, strict=True):
        assert a.feature == b.feature
        assert a.psi == pytest.approx(b.psi, rel=1e-9)
        assert a.statistic == pytest.approx(b.statistic, rel=1e-9)
        assert a.drifted == b.drifted


def test_the_window_slides_from_clean_to_drifted(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    send(m, "clean", 3000, seed=1, batch=20)
    assert not m.evaluate()["1"].drifted
    send(m, "new_category", 1500, seed=2, batch=20)  # half the window
    half = {f.feature for f in m.evaluate()["1"].drifted}
    send(m, "new_category", 1500, seed=3, batch=20)  # the clean panes have slid out
    full = m.evaluate()["1"]
    assert full.rows == 3000
    assert "payment_method" in half
    assert {f.feature for f in full.drifted} == {"payment_method"}
    psi = [s.psi["payment_method"] for s in m.history()]
    assert psi[0] < psi[1] < psi[2]


def test_prediction_distribution_drift_is_detected(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    X = model_input(generate_churn(2000, seed=4), CHURN_SCHEMA)
    p = np.random.default_rng(4).beta(5, 2, 2000)  # the model suddenly predicts churn
    m.observe(X, p, "batch", "1")
    drifted = {f.feature for f in m.evaluate()["1"].drifted}
    assert drifted == {PREDICTION}


def test_a_version_is_judged_only_once_its_window_holds_min_rows(
    reference: ReferenceProfile,
) -> None:
    m = monitor(reference)
    send(m, "clean", 900, seed=5, batch=100)
    assert m.evaluate() == {}
    send(m, "clean", 100, seed=6, batch=100)
    assert set(m.evaluate()) == {"1"}


def test_false_alarm_rate_through_the_monitor(reference: ReferenceProfile) -> None:
    m = monitor(reference, pane_rows=1000, panes=2, min_rows=2000)
    verdicts = []
    for seed in range(10, 20):
        send(m, "clean", 2000, seed=seed, batch=50)
        verdicts += [f.drifted for f in m.evaluate()["1"].features]
    assert np.mean(verdicts) <= 0.01


def test_unknown_version_never_breaks_the_request_path(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    X = model_input(generate_churn(50, seed=7), CHURN_SCHEMA)
    m.observe(X, np.full(50, 0.3), "r", "99")  # no reference for v99
    assert m.evaluate() == {}
    assert m.window_rows() == {}


def test_prometheus_gauges_by_model_version_feature(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    registry = CollectorRegistry()
    registry.register(m.collector())
    send(m, "covariate_shift", 2000, seed=8, batch=100)
    m.evaluate()
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    psi = {s.labels["feature"]: s.value for s in families["mlops_drift_psi"].samples}
    detected = {s.labels["feature"]: s.value for s in families["mlops_drift_detected"].samples}
    assert set(psi) == {*NAMES, PREDICTION}
    assert psi["monthly_charges"] > 0.2 and detected["monthly_charges"] == 1.0
    assert detected["contract"] == 0.0
    sample = families["mlops_drift_psi"].samples[0]
    assert sample.labels["model"] == "churn" and sample.labels["version"] == "1"
    rows = families["mlops_drift_window_rows"].samples[0]
    assert rows.value == 2000


def test_background_evaluation_and_subscribers(reference: ReferenceProfile) -> None:
    m = monitor(reference)
    seen: list[tuple[str, int]] = []
    m.subscribe(lambda version, report, at: seen.append((version, report.rows)))
    m.start(interval_s=0.05)
    try:
        send(m, "clean", 1200, seed=9, batch=100)
    finally:
        m.stop()  # stop() evaluates once more, so everything sent is judged
    assert seen and seen[-1] == ("1", 1200)
