"""Gate: promote only on passing tests and a margin over the champion; reasons are data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluate import Evaluation, MLTest
from components.gate import GateDecision, gate_step
from components.gate import decide as gate_decide
from pipelines.params import TrainingParams

PASS = (MLTest("differential", True, "ok"), MLTest("extreme_inputs", True, "ok"))


def decide(evaluation: Evaluation, **given) -> GateDecision:
    """The gate with the pipeline's declared primary metric and margin unless a test sets them."""
    return gate_decide(evaluation, **TrainingParams().for_step(gate_decide, **given))


def evaluation(auc: float, champion_auc: float | None, tests=PASS) -> Evaluation:
    return Evaluation(
        metrics={"roc_auc": auc, "log_loss": 0.4},
        slices={},
        slice_column="",
        threshold=0.5,
        tests=tests,
        champion_version=None if champion_auc is None else 3,
        champion_metrics=None
        if champion_auc is None
        else {"roc_auc": champion_auc, "log_loss": 0.5},
        roc_curve={"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "thresholds": [1.0, 0.0]},
        confusion_matrix=[[1, 0], [0, 1]],
        holdout_rows=2,
    )


def test_first_model_is_promoted_when_its_tests_pass() -> None:
    d = decide(evaluation(0.8, None))
    assert d.promote and d.champion is None
    assert "no champion yet" in d.reasons[-1]


def test_margin_decides_against_a_champion() -> None:
    assert decide(evaluation(0.82, 0.81), margin=0.005).promote
    kept = decide(evaluation(0.812, 0.81), margin=0.005)
    assert not kept.promote
    assert "does not beat the required margin 0.005" in kept.reasons[-1]
    assert kept.metric_deltas["roc_auc"] == pytest.approx(0.002)
    assert kept.metric_deltas["log_loss"] == pytest.approx(-0.1)


def test_a_failed_test_blocks_promotion_even_with_a_big_gain() -> None:
    tests = (MLTest("invariance", False, "region moves predictions"),)
    d = decide(evaluation(0.95, 0.80, tests))
    assert not d.promote
    assert d.reasons[0] == "test invariance failed: region moves predictions"


def test_lower_is_better_metric_and_unknown_metric() -> None:
    assert decide(evaluation(0.8, 0.8), primary_metric="log_loss", margin=0.05).promote
    with pytest.raises(ValueError, match="unknown primary metric"):
        decide(evaluation(0.8, None), primary_metric="auc")


def test_step_writes_the_decision(tmp_path: Path) -> None:
    (tmp_path / "e.json").write_text(json.dumps(evaluation(0.9, 0.8).to_dict()))
    d = gate_step(
        evaluation_path=str(tmp_path / "e.json"),
        decision_path=str(tmp_path / "d.json"),
        primary_metric="roc_auc",
        margin=0.01,
    )
    assert GateDecision.from_dict(json.loads((tmp_path / "d.json").read_text())) == d
    assert d.promote and d.improvement == pytest.approx(0.1)
