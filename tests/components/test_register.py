"""Register step: every candidate becomes a version with lineage; only a passed gate moves the
champion pointer."""

from __future__ import annotations

import json
from pathlib import Path

from components.evaluate import evaluate_model
from components.gate import decide
from components.ingest import ingest, ingest_step
from components.register import register_step
from components.train import TrainParams, train_step
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.registry import ModelRegistry
from pipelines.params import TrainingParams


def _candidate(tmp_path: Path, name: str, *, margin: float) -> dict:
    d = tmp_path / name
    d.mkdir()
    p = {k: str(d / k) for k in ("train", "holdout", "schema", "ingest", "model", "ref", "tsum")}
    ingest_step(
        **TrainingParams().for_step(
            ingest,
            rows=1500,
            seed=len(name),
            train_path=p["train"],
            holdout_path=p["holdout"],
            schema_path=p["schema"],
            summary_path=p["ingest"],
        )
    )
    train_step(
        train_path=p["train"],
        schema_path=p["schema"],
        model_path=p["model"],
        reference_path=p["ref"],
        summary_path=p["tsum"],
        params=TrainParams("xgboost", n_estimators=100),
    )
    import pandas as pd

    from mlops_core.registry import load_artifact

    registry = ModelRegistry(str(tmp_path / "reg"))
    champ = registry.champion("churn")
    ev = evaluate_model(
        load_artifact(p["model"]),
        pd.read_parquet(p["holdout"]),
        CHURN_SCHEMA,
        **TrainingParams().for_step(
            evaluate_model,
            champion=registry.load_model("churn") if champ else None,
            champion_version=champ,
        ),
    )
    (d / "ev.json").write_text(json.dumps(ev.to_dict()))
    gate_args = TrainingParams().for_step(decide, margin=margin)
    (d / "gate.json").write_text(json.dumps(decide(ev, **gate_args).to_dict()))
    return register_step(
        model_path=p["model"],
        schema_path=p["schema"],
        reference_path=p["ref"],
        evaluation_path=str(d / "ev.json"),
        decision_path=str(d / "gate.json"),
        ingest_summary_path=p["ingest"],
        train_summary_path=p["tsum"],
        registry_uri=str(tmp_path / "reg"),
        model_name="churn",
        run_id=f"run-{name}",
        output_path=str(d / "result.json"),
    )


def test_register_promotes_only_when_the_gate_passes(tmp_path: Path) -> None:
    first = _candidate(tmp_path, "a", margin=0.005)
    assert first["promoted"] and first["version"] == 1 and first["champion"] == 1
    # An impossible margin: registered for the record, champion unchanged.
    second = _candidate(tmp_path, "bb", margin=1.0)
    assert not second["promoted"] and second["version"] == 2 and second["champion"] == 1
    assert "does not beat the required margin 1.0" in second["reasons"][-1]
    assert json.loads((tmp_path / "bb" / "result.json").read_text()) == second
    registry = ModelRegistry(str(tmp_path / "reg"))
    v2 = registry.get("churn", 2)
    assert v2.tags == {"gate": "rejected"} and v2.run_id == "run-bb"
    assert v2.data_source == "synthetic:clean:rows=1500:seed=2"
    assert len(v2.data_fingerprint) == 64 and v2.estimator == "xgboost"
    assert 0 < v2.metrics["train_positive_rate"] < 1
    assert registry.reference("churn", 2).prediction is not None
    assert generate_churn(1).columns[-1] == registry.schema("churn", 2).target
