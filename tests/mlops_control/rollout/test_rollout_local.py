"""End to end, locally: `mlops canary run` promotes a good version and rolls back a bad one.

Real everything: a registry with models trained on the project's generator, the local router
process (`mlops canary router`) with its `mlops serve` children, HTTP traffic from worker threads,
the servers' /metrics, and the CLI as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from mlops_control.rollout.policy import RolloutPolicy
from mlops_control.traffic.model_server_process import mlops_executable
from mlops_control.traffic.router_process import RouterProcess
from mlops_core.registry import ModelRegistry
from mlops_demo.canary_traffic import TrafficGenerator
from mlops_demo.train_and_register import train_and_register

MODEL = "churn"
pytestmark = pytest.mark.slow


def mlops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mlops_executable(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_mlops_canary_run_promotes_a_good_version_and_rolls_back_a_bad_one(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    v1 = train_and_register(registry, MODEL, rows=12000, seed=1, estimator="xgboost")
    registry.set_champion(MODEL, v1, reason="test")
    v2 = train_and_register(registry, MODEL, rows=12000, seed=2, estimator="xgboost")
    v3 = train_and_register(registry, MODEL, rows=4000, seed=3, invert_labels=True)
    policy = tmp_path / "policy.json"
    policy.write_text(RolloutPolicy(analysis_interval_s=1.5, min_requests_per_step=60).to_json())
    log = tmp_path / "decisions.jsonl"
    router = RouterProcess.start(MODEL, str(v1), registry.uri, tmp_path / "work")
    env = {
        "MLOPS_REGISTRY_URI": registry.uri,
        "MLOPS_MODEL_NAME": MODEL,
        "MLOPS_CANARY_ROUTER_URL": router.url,
        "MLOPS_CANARY_POLICY": str(policy),
        "MLOPS_WORK_DIR": str(tmp_path / "work"),
    }
    try:
        with TrafficGenerator(router.url, MODEL, workers=4) as traffic:
            started = mlops("canary", "start", "--version", str(v2), env=env)
            assert started.returncode == 0, started.stderr
            state = httpx.get(f"{router.url}/router/state").json()
            assert state["canary"]["version"] == str(v2) and state["canary_percent"] == 10
            # Started again (the version is already the canary): resumed, not restarted.
            again = mlops("canary", "start", "--version", str(v2), env=env)
            assert again.returncode == 0, again.stderr
            assert f"canary v{v2} is already running at 10%" in again.stdout
            now = httpx.get(f"{router.url}/router/state").json()
            assert (now["canary"], now["canary_percent"]) == (state["canary"], 10)

            good = mlops("canary", "run", "--target", "local", "--log", str(log), env=env)
            assert good.returncode == 0, good.stdout + good.stderr
            assert "promoted" in good.stdout
            state = httpx.get(f"{router.url}/router/state").json()
            assert state["stable"]["version"] == str(v2) and state["canary"] is None
            assert registry.champion(MODEL) == v2  # `run` moves the champion on promotion

            assert mlops("canary", "start", "--version", str(v3), env=env).returncode == 0
            bad = mlops("canary", "run", "--target", "local", "--log", str(log), env=env)
            assert bad.returncode == 1, bad.stdout + bad.stderr
            assert "rolled back" in bad.stdout
            state = httpx.get(f"{router.url}/router/state").json()
            assert state["stable"]["version"] == str(v2) and state["canary"] is None
            assert registry.champion(MODEL) == v2

            status = mlops("canary", "status", "--log", str(log), env=env)
            assert status.returncode == 0 and "rollback" in status.stdout

            # Bad admin requests get a reason; the router keeps routing.
            admin = httpx.Client(base_url=router.url, timeout=10)
            r = admin.put("/router/weights", json={"canary_percent": 150})
            assert r.status_code == 400 and "0..100" in r.json()["error"]
            r = admin.post("/router/promote")
            assert r.status_code == 409 and "no canary" in r.json()["error"]
            r = admin.put("/router/canary", content=b"{not json")
            assert r.status_code == 400 and "not JSON" in r.json()["error"]
            r = admin.put("/router/canary", json={"version": "999", "percent": 10})
            assert r.status_code == 404 and "no version 999" in r.json()["error"]
            promote_again = mlops("canary", "promote", env=env)
            assert promote_again.returncode == 2 and "no canary to promote" in promote_again.stderr
            assert httpx.get(f"{router.url}/v1/models/{MODEL}").status_code == 200
    finally:
        assert router.stop() == 0, router.log.read_text()[-3000:]

    entries = [json.loads(line) for line in log.read_text().splitlines()]
    runs = {
        e["canary_version"]: [
            x["decision"]["action"] for x in entries if x["canary_version"] == e["canary_version"]
        ]
        for e in entries
    }
    assert runs[str(v2)][-1] == "promote" and runs[str(v2)].count("step_up") == 2
    assert "rollback" not in runs[str(v2)]
    assert runs[str(v3)][-1] == "rollback" and "promote" not in runs[str(v3)]
    last = entries[-1]["decision"]
    failed = {c["name"] for c in last["checks"] if c["status"] == "fail"}
    assert failed == {"predictions"}  # inverted labels: the predictions moved, not errors
    # The stable path never failed and every side served what the router said it did.
    tally = traffic.tally
    assert tally.transport_errors == 0
    assert tally.failures("stable") == 0 and tally.failures("canary") == 0
    assert {s for (s, _, _) in tally.by_side} <= {"stable", "canary"}
    assert tally.served("canary") > 0
    served_versions = {(side, v) for (side, v, _) in tally.by_side}
    assert ("canary", str(v3)) in served_versions and ("stable", str(v1)) in served_versions
