"""The portfolio stays fast with 20 models: 20 registered models, each with a monitoring log its
drift monitor and label store wrote, behind `mlops dashboard` on 127.0.0.1. The first load (the
page, its bundle and the portfolio's JSON, with cold caches) and a later poll each take under 1 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.mlops_control.dashboard.harness import register_models, start_dashboard, write_monitoring

pytestmark = pytest.mark.slow

MODELS = [f"model-{i:02d}" for i in range(20)]
BUDGET_S = 1.0


def test_portfolio_of_20_models_loads_in_under_a_second(tmp_path: Path) -> None:
    registry_uri, audit = str(tmp_path / "registry"), tmp_path / "audit"
    register_models(registry_uri, MODELS)
    for i, name in enumerate(MODELS):
        write_monitoring(audit, registry_uri, name, rows=1500, seed=i,
                         scenario="covariate_shift" if i % 4 == 0 else "clean")  # fmt: skip
    dashboard = start_dashboard(
        ["--registry", registry_uri, "--audit-dir", str(audit), "--work-dir", str(tmp_path)],
        tmp_path / "dashboard.log",
    )
    try:
        with httpx.Client(base_url=dashboard.url, timeout=10) as client:
            started = time.perf_counter()
            page = client.get("/")
            bundle = client.get("/static/dashboard.js")
            doc = client.get("/api/portfolio")
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = client.get("/api/portfolio")
            poll = time.perf_counter() - started
    finally:
        dashboard.stop()
    assert page.status_code == bundle.status_code == doc.status_code == again.status_code == 200
    assert 'id="app"' in page.text and len(bundle.content) > 20_000
    rows = doc.json()["models"]
    assert [r["name"] for r in rows] == MODELS
    for r in rows:  # every row has what the page shows: champion, quality, drift
        assert r["champion"] == 1 and r["training_metric"]["name"] == "accuracy", r
        assert r["quality"]["labelled"] > 0 and r["drift"]["share_drifted"] is not None, r
    assert any(r["drift"]["drifted"] for r in rows) and not all(r["drift"]["drifted"] for r in rows)
    print(
        f"portfolio of {len(rows)} models: first load {first * 1000:.0f} ms, poll {poll * 1000:.0f} ms"
    )
    assert first < BUDGET_S, f"first load took {first:.2f} s"
    assert poll < BUDGET_S, f"a poll took {poll:.2f} s"
