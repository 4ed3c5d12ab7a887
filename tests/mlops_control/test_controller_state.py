"""The controller's records and policy annotation, without an API server (the controller against
a real kube-apiserver is tests/apiserver/test_apiserver_canary_controller.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.canary_simulation import TrafficModel, draw_counters, draw_window
from components import isvc_metadata as names
from mlops_control.controller import POLICY_ANNOTATION, Reconciler
from mlops_control.records import DecisionRecord, RetrainingRecord, RolloutRecord
from mlops_control.rollout.analysis import CanaryState, analyze
from mlops_control.rollout.policy import PolicyError, RolloutPolicy
from mlops_control.rollout.step import RolloutProgress
from mlops_control.rollout.window import Snapshot


def _on_object(values: dict[str, str]) -> dict:
    return {"metadata": {"name": "churn", "namespace": "mlops", "annotations": values}}


def test_the_rollout_record_round_trips_through_the_annotation() -> None:
    rng = np.random.default_rng(0)
    model = TrafficModel()
    _, state = analyze(RolloutPolicy(), CanaryState(), draw_window(model, model, 2000, 10, rng))
    baseline = Snapshot(draw_counters(model, 500, rng), draw_counters(model, 50, rng))
    record = RolloutRecord("3", "2", RolloutProgress(state, baseline, 1.0), 2.0)
    raw = record.to_json()
    assert RolloutRecord.of(_on_object({names.ROLLOUT_STATE: raw})) == record
    # The layout readers rely on (tests/apiserver: state.canary_version, state.state.step_index).
    doc = json.loads(raw)
    assert doc["canary_version"] == "3" and doc["state"]["step_index"] == state.step_index
    assert len(raw) < 64 * 1024  # far under the 256 KiB annotation budget
    assert RolloutRecord.of(_on_object({names.ROLLOUT_STATE: "{not json"})) is None
    assert RolloutRecord.of(_on_object({names.ROLLOUT_STATE: "[1, 2]"})) is None


def test_rollout_and_retraining_records_live_in_their_own_annotations() -> None:
    failed = DecisionRecord.of_event("failed", "rollout policy: steps must ...")
    fired = RetrainingRecord(at=1700.0, run_id="run-1", trigger_id="t-1")
    isvc = _on_object(
        {names.LAST_DECISION: failed.to_json(), names.LAST_RETRAINING: fired.to_json()}
    )
    assert DecisionRecord.of(isvc) == failed
    assert RetrainingRecord.of(isvc) == fired
    # A text that merely contains the words is not a failed decision: it is parsed, not searched.
    lookalike = _on_object({names.LAST_DECISION: json.dumps({"reason": '"action":"failed"'})})
    assert DecisionRecord.of(lookalike) is None


def test_every_annotation_has_the_one_prefix() -> None:
    assert all(a.startswith("mlops.platform/") for a in (*names.ANNOTATIONS, *names.LABELS))
    assert len(set(names.ANNOTATIONS)) == len(names.ANNOTATIONS)


def test_the_policy_annotation_is_inline_yaml_or_json() -> None:
    r = Reconciler(api_client=None, source_for=lambda ns: None)  # type: ignore[arg-type]  # policy_for reads no API and no source

    def isvc(raw: str) -> dict:
        return {"metadata": {"namespace": "mlops", "annotations": {POLICY_ANNOTATION: raw}}}

    assert r.policy_for(isvc("{}")) == RolloutPolicy()
    assert r.policy_for(isvc(json.dumps({"steps": [5, 100]}))).steps == (5, 100)
    assert r.policy_for(isvc("detect_error_ratio: 2\npower: 0.8")).detect_error_ratio == 2.0
    with pytest.raises(PolicyError, match="unknown rollout policy fields"):
        r.policy_for(isvc("{bogus: 1}"))
