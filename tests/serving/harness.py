"""Helpers shared by the serving tests: a real registry, real `mlops serve` subprocesses, data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from components.train import TrainParams, save_model, train_model
from mlops_control.traffic.model_server_process import free_port, wait_for_http_ready
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry

MODEL = "churn"


@dataclass(frozen=True)
class RegisteredModels:
    registry_uri: str
    xgboost_version: int  # the champion
    logistic_version: int
    root: Path


def register_test_models(root: Path) -> RegisteredModels:
    """Train an XGBoost (champion) and a logistic-regression version on generated churn data."""
    registry = ModelRegistry(str(root / "registry"))
    train = generate_churn(3000, seed=11)
    reference = profile_reference(train, CHURN_SCHEMA)
    versions = []
    for estimator in ("xgboost", "logistic_regression"):
        result = train_model(train, CHURN_SCHEMA, TrainParams(estimator=estimator, n_estimators=80))
        path = root / f"{estimator}.skops"
        save_model(result.pipeline, str(path))
        mv = registry.register(
            MODEL, str(path), schema=CHURN_SCHEMA, reference=reference, estimator=estimator
        )
        versions.append(mv.version)
    registry.set_champion(MODEL, versions[0], reason="serving tests")
    return RegisteredModels(str(root / "registry"), versions[0], versions[1], root)


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def start_server(args: list[str], env: dict[str, str], log: Path) -> RunningServer:
    port = free_port()
    full_env = {**os.environ, **env, "MLOPS_SERVE_PORT": str(port)}
    mlops = str(Path(sys.executable).with_name("mlops"))
    with log.open("wb") as out:
        process = subprocess.Popen([mlops, "serve", *args], env=full_env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    wait_for_http_ready(f"{url}/v2/health/ready", process, log, timeout_s=120, what="mlops serve")
    return RunningServer(url, process, log)


def stop_server(server: RunningServer) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"server ignored SIGTERM:\n{server.log.read_text()}") from None


def scoring_frame(rows: int, seed: int = 5) -> pd.DataFrame:
    return generate_churn(rows, seed=seed).drop(columns=[CHURN_SCHEMA.target])
