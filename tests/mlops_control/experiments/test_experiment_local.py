"""End to end, locally: `mlops experiment` over real model servers behind the real router.

Three registered versions of different quality (one guessing, one good, one trained on inverted
labels); traffic with known truth; labels posted to the router a moment after each answer. The
bandit moves the shares toward the good version, declares it the winner and promotes it (the
router keeps only it; it is the champion). Then a shadow of the inverted version: its readout
reports the disagreement, while every client answer still comes from the primary; a shadow
that agrees passes and becomes the canary.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from mlops_control.traffic.model_server_process import mlops_executable
from mlops_control.traffic.router_process import RouterProcess
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.jsonl_log import read_json_lines
from mlops_core.registry import ModelRegistry
from mlops_demo.train_and_register import train_and_register
from serving.v1_instances import v1_instances

MODEL = "churn"
LABEL_DELAY_S = 0.5
PAUSE_S = 0.05  # between one worker's requests: about 50 requests a second in all, so the
# evidence builds over several intervals and the shares are seen moving
pytestmark = pytest.mark.slow


class LabelledTraffic:
    """Single-row requests with known truth from worker threads; each answer's label is posted
    to the router LABEL_DELAY_S later. Tallies the answering version per x-model-version."""

    def __init__(self, router: str, workers: int = 3) -> None:
        df = generate_churn(3000, seed=77)
        self.truth = df[CHURN_SCHEMA.target].astype(int).tolist()
        self.rows = v1_instances(df.drop(columns=[CHURN_SCHEMA.target]))
        self.router, self.workers = router, workers
        self.versions: Counter[str] = Counter()
        self.pending: list[tuple[float, str, int]] = []
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.threads: list[threading.Thread] = []

    def _send(self, worker: int) -> None:
        i = worker
        with httpx.Client(base_url=self.router, timeout=30) as client:
            while not self.stop.is_set():
                time.sleep(PAUSE_S)
                i = (i + self.workers) % len(self.rows)
                rid = uuid.uuid4().hex
                r = client.post(
                    f"/v1/models/{MODEL}:predict",
                    json={"instances": [self.rows[i]]},
                    headers={"x-request-id": rid},
                )
                with self.lock:
                    self.versions[r.headers.get("x-model-version", "?")] += 1
                    if r.status_code == 200:
                        self.pending.append((time.monotonic(), rid, self.truth[i]))

    def _label(self) -> None:
        with httpx.Client(base_url=self.router, timeout=30) as client:
            while not self.stop.is_set():
                time.sleep(0.2)
                due = time.monotonic() - LABEL_DELAY_S
                with self.lock:
                    ready = [p for p in self.pending if p[0] <= due]
                    self.pending = [p for p in self.pending if p[0] > due]
                if ready:
                    labels = [{"request_id": rid, "label": y} for _, rid, y in ready]
                    r = client.post("/router/labels", json={"labels": labels})
                    assert r.status_code == 200, r.text

    def __enter__(self) -> LabelledTraffic:
        targets = [(self._send, (w,)) for w in range(self.workers)] + [(self._label, ())]
        for fn, args in targets:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def mlops(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mlops_executable(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_bandit_promotes_the_best_version_and_a_shadow_never_answers_a_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(str(tmp_path / "registry"))
    guess = train_and_register(registry, MODEL, rows=3000, seed=1, random_labels=True)
    good = train_and_register(registry, MODEL, rows=8000, seed=2, estimator="xgboost")
    bad = train_and_register(registry, MODEL, rows=3000, seed=3, invert_labels=True)
    registry.set_champion(MODEL, guess, reason="test")
    audit = tmp_path / "audit"
    monkeypatch.setenv("MLOPS_AUDIT_DIR", str(audit))  # the router's servers inherit it
    env = {
        "MLOPS_REGISTRY_URI": registry.uri,
        "MLOPS_MODEL_NAME": MODEL,
        "MLOPS_AUDIT_DIR": str(audit),
        "MLOPS_WORK_DIR": str(tmp_path / "work"),
    }
    bandit_policy = tmp_path / "bandit.yaml"
    bandit_policy.write_text(
        yaml.safe_dump(
            {
                "reward": {"task": "binary", "classes": [0, 1]},
                "floor_percent": 5,
                "max_step_percent": 15,
                "interval_s": 2,
                "label_window_s": 1.5,
                "win_probability": 0.95,
                "alpha": 0.05,
                "min_labelled_per_arm": 60,
            }
        )
    )
    shadow_policy = tmp_path / "shadow.yaml"
    shadow_policy.write_text(
        yaml.safe_dump({"strategy": "shadow", "task": "binary", "requests": 60})
    )
    router = RouterProcess.start(MODEL, str(guess), registry.uri, tmp_path / "work")
    env["MLOPS_CANARY_ROUTER_URL"] = router.url
    versions = f"{guess},{good},{bad}"
    try:
        with LabelledTraffic(router.url):
            started = mlops(
                "experiment", "start", "--strategy", "bandit", "--policy", str(bandit_policy),
                "--versions", versions, env=env,
            )  # fmt: skip
            assert started.returncode == 0, started.stdout + started.stderr
            split = httpx.get(f"{router.url}/router/state").json()["split"]
            assert split == {str(guess): 34, str(good): 33, str(bad): 33}
            again = mlops(
                "experiment", "start", "--strategy", "bandit", "--policy", str(bandit_policy),
                "--versions", versions, env=env,
            )  # fmt: skip
            assert again.returncode == 2 and "is running" in again.stderr

            run = mlops("experiment", "run", "--max-intervals", "90", env=env)
            assert run.returncode == 0, run.stdout + run.stderr
            assert f"v{good} won" in run.stdout

        decisions = [
            d
            for d in read_json_lines(tmp_path / "work" / "experiments" / f"{MODEL}.decisions.jsonl")
            if d["event"] == "experiment_decision"
        ]
        shares = [d["percents"][str(good)] for d in decisions if d["action"] == "allocate"]
        assert len(shares) >= 2 and max(shares) > 33 and shares[-1] >= shares[0], decisions
        assert all(min(d["percents"].values()) >= 5 for d in decisions if d["action"] != "winner")
        assert decisions[-1]["action"] == "winner" and decisions[-1]["winner"] == str(good)
        assert decisions[-1]["p_best"][str(good)] > 0.95
        state = httpx.get(f"{router.url}/router/state").json()
        assert state["stable"]["version"] == str(good) and state["split"] == {}
        assert registry.champion(MODEL) == good
        status = mlops("experiment", "status", env=env)
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["state"] == "ended" and shown["shares"] == {str(good): 100}
        assert shown["last_decision"]["winner"] == str(good)

        # A shadow whose answers differ (trained on inverted labels): reported, never served.
        with LabelledTraffic(router.url) as traffic:
            started = mlops(
                "experiment", "start", "--strategy", "shadow", "--policy", str(shadow_policy),
                "--versions", f"{good},{bad}", env=env,
            )  # fmt: skip
            assert started.returncode == 0, started.stdout + started.stderr
            run = mlops("experiment", "run", "--max-intervals", "60", env=env)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "agreement" in run.stdout
        assert set(traffic.versions) == {str(good)}, traffic.versions  # every client answer
        shown = json.loads(mlops("experiment", "status", env=env).stdout)
        readout = shown["last_decision"]["readout"]
        assert readout["status"] == "fail" and readout["requests"] == 60
        assert readout["agreement"] < 0.5 and readout["errors"] == 0
        assert httpx.get(f"{router.url}/router/state").json()["shadow"] is None
        # The shadow's copies stayed out of its server's live record.
        logged = {d["version"] for d in read_json_lines(audit / "predictions.jsonl")}
        mirrored = list(
            read_json_lines(tmp_path / "work" / "canary" / "servers" / "mirrored.jsonl")
        )
        assert len(mirrored) >= 60
        assert all(m["primary_version"] == str(good) for m in mirrored)
        ids = {m["request_id"] for m in mirrored}
        bad_lines = [
            d for d in read_json_lines(audit / "predictions.jsonl") if d["request_id"] in ids
        ]
        assert {d["version"] for d in bad_lines} == {str(good)}
        assert str(bad) in logged  # it served live traffic during the bandit, and was logged

        # An A/B/n test at fixed shares: they never move; the winner is read out and promoted.
        abn = tmp_path / "abn.yaml"
        abn.write_text(
            yaml.safe_dump(
                {
                    "strategy": "abn",
                    "reward": {"task": "binary", "classes": [0, 1]},
                    "shares": {str(good): 70, str(bad): 30},
                    "interval_s": 2,
                    "label_window_s": 1.5,
                    "min_labelled_per_arm": 30,
                }
            )
        )
        with LabelledTraffic(router.url):
            started = mlops(
                "experiment", "start", "--strategy", "abn", "--policy", str(abn), env=env
            )
            assert started.returncode == 0, started.stdout + started.stderr
            assert httpx.get(f"{router.url}/router/state").json()["split"] == {
                str(good): 70, str(bad): 30
            }  # fmt: skip
            run = mlops("experiment", "run", "--max-intervals", "60", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"v{good} won" in run.stdout
        abn_decisions = [
            d
            for d in read_json_lines(tmp_path / "work" / "experiments" / f"{MODEL}.decisions.jsonl")
            if d["event"] == "experiment_decision" and d["strategy"] == "abn"
        ]
        assert all(d["percents"] == {str(good): 70, str(bad): 30} for d in abn_decisions[:-1])
        effect = abn_decisions[-1]["readout"][str(bad)]
        assert effect["effect_high"] < 0  # the bad version's effect against the control
        assert httpx.get(f"{router.url}/router/state").json()["split"] == {}

        # A shadow that answers as the primary does (the same training run) passes, and becomes
        # the canary at the policy's share.
        twin = train_and_register(registry, MODEL, rows=8000, seed=2, estimator="xgboost")
        passing = tmp_path / "passing.yaml"
        passing.write_text(
            yaml.safe_dump(
                {"task": "binary", "requests": 40, "max_latency_ratio": 50, "canary_percent": 10}
            )
        )
        with LabelledTraffic(router.url):
            started = mlops(
                "experiment", "start", "--strategy", "shadow", "--policy", str(passing),
                "--versions", f"{good},{twin}", env=env,
            )  # fmt: skip
            assert started.returncode == 0, started.stdout + started.stderr
            run = mlops("experiment", "run", "--max-intervals", "60", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"v{twin} passed: now the canary at 10%" in run.stdout
        state = httpx.get(f"{router.url}/router/state").json()
        assert state["canary"]["version"] == str(twin) and state["canary_percent"] == 10
        assert state["shadow"] is None
    finally:
        assert router.stop() == 0
