"""The controller's state record and policy annotation, without an API server (the controller
against a real kube-apiserver is tests/apiserver/test_apiserver_canary_controller.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving.canary.analysis import CanaryState, analyze
from serving.canary.controller import (
    POLICY_ANNOTATION,
    STATE_ANNOTATION,
    Reconciler,
    RolloutRecord,
    record_of,
)
from serving.canary.policy import PolicyError, RolloutPolicy
from serving.canary.simulation import TrafficModel, draw_counters, draw_window
from serving.canary.window import Snapshot


def test_the_rollout_record_round_trips_through_the_annotation() -> None:
    rng = np.random.default_rng(0)
    model = TrafficModel()
    _, state = analyze(RolloutPolicy(), CanaryState(), draw_window(model, model, 2000, 10, rng))
    baseline = Snapshot(draw_counters(model, 500, rng), draw_counters(model, 50, rng))
    record = RolloutRecord("3", "2", state, baseline, 1.0, 2.0)
    isvc = {"metadata": {"annotations": {STATE_ANNOTATION: record.to_json()}}}
    assert record_of(isvc) == record
    assert len(record.to_json()) < 64 * 1024  # far under the 256 KiB annotation budget
    assert record_of({"metadata": {"annotations": {STATE_ANNOTATION: "{not json"}}}) is None


def test_the_policy_annotation_is_inline_yaml_or_json() -> None:
    r = Reconciler(api_client=None, source_for=lambda ns: None)  # type: ignore[arg-type]

    def isvc(raw: str) -> dict:
        return {"metadata": {"namespace": "mlops", "annotations": {POLICY_ANNOTATION: raw}}}

    assert r.policy_for(isvc("{}")) == RolloutPolicy()
    assert r.policy_for(isvc(json.dumps({"steps": [5, 100]}))).steps == (5, 100)
    assert r.policy_for(isvc("detect_error_ratio: 2\npower: 0.8")).detect_error_ratio == 2.0
    with pytest.raises(PolicyError, match="unknown rollout policy fields"):
        r.policy_for(isvc("{bogus: 1}"))
