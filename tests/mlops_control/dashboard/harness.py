"""Real inputs for the dashboard tests: a registry of trained models, monitoring logs written by
the model server's own drift monitor, label store and `MonitoringLog`, and `mlops dashboard` run as
a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from components.evaluate import evaluate_model
from components.train import TrainParams, model_input, save_model, train_model
from mlops_control.traffic.model_server_process import free_port, wait_for_http_ready
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import DriftThresholds, profile_reference
from mlops_core.registry import ModelRegistry
from pipelines.params import TrainingParams
from serving.monitoring.drift_monitor import DriftMonitor, WindowConfig
from serving.monitoring.feedback import FeedbackStore
from serving.monitoring.monitoring_log import MONITORING_LOG, MonitoringLog


def register_models(
    registry_uri: str, names: list[str], rows: int = 2000, *, seed: int = 3, champion: bool = True
) -> list[int]:
    """One trained logistic regression, with its metrics and slice metrics on a generated holdout,
    registered (and made champion, unless `champion` is False) under every name; its versions."""
    registry = ModelRegistry(registry_uri)
    train = generate_churn(rows, seed=seed)
    result = train_model(train, CHURN_SCHEMA, TrainParams(estimator="logistic_regression"))
    path = Path(registry_uri).parent / f"model-{seed}.skops"
    save_model(result.pipeline, str(path))
    reference = profile_reference(
        train,
        CHURN_SCHEMA,
        predictions=result.pipeline.predict_proba(model_input(train, CHURN_SCHEMA))[:, 1],
    )
    # The evaluate step's own evaluation, at the pipeline's defaults (its slice column too).
    holdout = generate_churn(rows // 2, seed=seed + 1000)
    evaluation = evaluate_model(
        result.pipeline, holdout, CHURN_SCHEMA, **TrainingParams().for_step(evaluate_model)
    )
    versions = []
    for name in names:
        mv = registry.register(
            name,
            str(path),
            schema=CHURN_SCHEMA,
            reference=reference,
            metrics=evaluation.metrics,
            estimator="logistic_regression",
            run_id=f"run-{name}",
            slices=evaluation.slice_record(),
        )
        if champion:
            registry.set_champion(name, mv.version, reason="dashboard tests")
        versions.append(mv.version)
    return versions


def write_monitoring(
    audit_dir: Path,
    registry_uri: str,
    model: str,
    *,
    scenario: str = "clean",
    rows: int = 2000,
    evaluations: int = 3,
    seed: int = 7,
) -> None:
    """Score generated traffic with the champion, label it, and log each drift evaluation."""
    registry = ModelRegistry(registry_uri)
    version = str(registry.champion(model))
    pipeline = registry.load_model(model, int(version))
    reference = registry.reference(model, int(version))
    drift = DriftMonitor(
        model=model,
        feature_names=CHURN_SCHEMA.feature_names,
        references=lambda v: reference if v == version else None,
        thresholds=DriftThresholds(),
        window=WindowConfig(pane_rows=500, panes=10, min_rows=500),
    )
    feedback = FeedbackStore(model=model, max_pending=rows * 2)
    drift.subscribe(MonitoringLog(audit_dir / MONITORING_LOG, drift=drift, feedback=feedback))
    per = rows // evaluations
    for k in range(evaluations):
        df = generate_churn(per, scenario=scenario, seed=seed + k)
        X = model_input(df, CHURN_SCHEMA)
        p = pipeline.predict_proba(X)[:, 1]
        ids = [f"{model}-{k}-{i}" for i in range(per)]
        drift.observe(X, p, ids, version)
        feedback.observe(X, p, ids, version)
        for rid, label in zip(ids, df[CHURN_SCHEMA.target].astype(int), strict=True):
            feedback.add_label(rid, int(label))
        drift.evaluate()


@dataclass
class Dashboard:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_dashboard(args: list[str], log: Path, env: dict[str, str] | None = None) -> Dashboard:
    port = free_port()
    mlops = str(Path(sys.executable).with_name("mlops"))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [mlops, "dashboard", "--port", str(port), *args],
            env={**os.environ, "MLOPS_DASHBOARD_POLL_S": "1", **(env or {})},
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    wait_for_http_ready(f"{url}/healthz", process, log, timeout_s=60, what="mlops dashboard")
    return Dashboard(url, process, log)
