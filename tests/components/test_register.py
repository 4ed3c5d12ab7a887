"""Register step: every candidate becomes a version with lineage; only a passed gate moves the
champion pointer."""

from __future__ import annotations

import json
from pathlib import Path

from components.evaluate import Evaluation, evaluate_model
from components.gate import decide
from components.ingest import ingest, ingest_step
from components.register import register_step
from components.train import TrainParams, train_step
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.registry import ModelRegistry
from mlops_core.slices import SliceMetrics
from pipelines.params import TrainingParams


def _candidate(tmp_path: Path, name: str, *, margin: float) -> dict:
    (tmp_path / name).mkdir()
    p = _paths(tmp_path, name)
    _prepare(tmp_path, name, p, margin=margin)
    return register_step(**_register_args(tmp_path, name, p))


def _prepare(tmp_path: Path, name: str, p: dict[str, str], *, margin: float = 0.005) -> None:
    """Ingest, train, evaluate against the registry's champion and gate: a run up to register."""
    d = tmp_path / name
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


def _register_args(tmp_path: Path, name: str, p: dict[str, str]) -> dict[str, str]:
    d = tmp_path / name
    return dict(
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


def _paths(tmp_path: Path, name: str) -> dict[str, str]:
    d = tmp_path / name
    return {k: str(d / k) for k in ("train", "holdout", "schema", "ingest", "model", "ref", "tsum")}


def _register_in_process(args: tuple[dict[str, str], object]) -> dict:
    kwargs, barrier = args
    barrier.wait()  # both runs reach the register step at the same moment
    return register_step(**kwargs)


def test_two_runs_into_an_empty_registry_promote_only_one(tmp_path: Path) -> None:
    """The probe: both gates saw "no champion yet" and both promoted, so v2 became champion
    without ever being compared with v1. Now the second promotion is a lost compare-and-swap."""
    import multiprocessing as mp

    # Two complete runs up to the gate, both judged against the empty registry ...
    runs = []
    for name in ("a", "bb"):
        (tmp_path / name).mkdir()
        runs.append(_paths(tmp_path, name))
    for name, p in zip(("a", "bb"), runs, strict=True):
        _prepare(tmp_path, name, p)
    # ... then both register in separate processes at once.
    ctx = mp.get_context("spawn")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        results = pool.map(
            _register_in_process,
            [(_register_args(tmp_path, n, p), barrier) for n, p in zip(("a", "bb"), runs, strict=True)],
        )  # fmt: skip
    assert sorted(r["version"] for r in results) == [1, 2]
    assert sorted(r["promoted"] for r in results) == [False, True]
    winner = next(r for r in results if r["promoted"])
    loser = next(r for r in results if not r["promoted"])
    assert "another writer moved it" in loser["reasons"][-1]
    assert "compared with no champion" in loser["reasons"][-1]
    registry = ModelRegistry(str(tmp_path / "reg"))
    assert registry.champion("churn") == winner["version"]
    assert [h["previous"] for h in registry.champion_doc("churn")["history"]] == [None]


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
    # The evaluation's slice metrics are kept with the version (they outlive the run).
    evaluation = Evaluation.from_dict(json.loads((tmp_path / "bb" / "ev.json").read_text()))
    assert registry.slices("churn", 2) == SliceMetrics("contract", "binary", evaluation.slices)
    assert set(evaluation.slices) == {"month-to-month", "one-year", "two-year"}
    assert generate_churn(1).columns[-1] == registry.schema("churn", 2).target
