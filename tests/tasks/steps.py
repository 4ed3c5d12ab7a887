"""The training pipeline's steps run in order as plain functions (what each KFP task calls), on a
user's CSV: ingest -> validate -> train -> evaluate -> gate -> register."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.evaluate import evaluate_step
from components.gate import gate_step
from components.ingest import ingest, ingest_step
from components.register import register_step
from components.train import TrainParams, train_step
from components.validate import validate_step
from pipelines.params import TrainingParams


def run_steps(
    csv: Path,
    target: str,
    work: Path,
    *,
    registry_uri: str,
    model_name: str,
    estimator: str = "xgboost",
    **params: Any,
) -> dict[str, Any]:
    """Every step with the pipeline's declared defaults except what `params` sets."""
    work.mkdir(parents=True, exist_ok=True)
    p = {k: str(work / k) for k in ("train", "holdout", "schema", "isum", "model", "ref", "tsum")}
    p |= {k: str(work / k) for k in ("report", "vsum", "evaluation", "decision", "result")}
    tp = TrainingParams(data_source=str(csv), target=target, estimator=estimator, **params)
    ingest_step(
        **tp.for_step(ingest),
        train_path=p["train"],
        holdout_path=p["holdout"],
        schema_path=p["schema"],
        summary_path=p["isum"],
    )
    validate_step(
        data_paths=[p["train"], p["holdout"]],
        schema_path=p["schema"],
        report_path=p["report"],
        summary_path=p["vsum"],
        registry_uri=registry_uri,
        model_name=model_name,
        fail_on_drift=tp.fail_on_drift,
        leakage_threshold=tp.leakage_threshold,
        fail_on_leakage=tp.fail_on_leakage,
    )
    train_step(
        train_path=p["train"],
        schema_path=p["schema"],
        model_path=p["model"],
        reference_path=p["ref"],
        summary_path=p["tsum"],
        params=TrainParams(estimator, seed=tp.seed, n_estimators=150),
    )
    evaluate_step(
        **tp.for_step(
            evaluate_step,
            model_path=p["model"],
            holdout_path=p["holdout"],
            schema_path=p["schema"],
            evaluation_path=p["evaluation"],
            registry_uri=registry_uri,
            model_name=model_name,
        )
    )
    gate_step(
        evaluation_path=p["evaluation"],
        decision_path=p["decision"],
        primary_metric=tp.primary_metric,
        margin=tp.margin,
    )
    return register_step(
        model_path=p["model"],
        schema_path=p["schema"],
        reference_path=p["ref"],
        evaluation_path=p["evaluation"],
        decision_path=p["decision"],
        ingest_summary_path=p["isum"],
        train_summary_path=p["tsum"],
        registry_uri=registry_uri,
        model_name=model_name,
        run_id=f"test-{model_name}",
        output_path=p["result"],
    )
